"""The `hlstream` command: the one front door.

    run | start | stop | restart STAGE     the pipeline under supervisord
    status [--json]                         stages + pipeline health; exit 1 when unhealthy
    tap KIND [COIN...]                      live bus messages, one line each
    backfill [--hours N]                    one-shot REST backfill with a progress bar
    verify [FILE...]                        CSV integrity; exit 1 on any defect
    verify --venue [--from T] [--to T]      rows vs the venue's candles; exit 1 on a mismatch
    rebuild --interval I [--check]          re-derive CSV files of any interval from the tape
    repair                                  apply pending revisions ({file}.revisions)
    demo                                    fake exchange + pipeline, no internet needed
    metrics                                 Prometheus exporter alone (needs metrics_port)
    help settings                           every setting, its flag, variable and default

Every command takes `--config FILE` and one `--kebab-name VALUE` flag per setting.
Exit codes: 0 ok, 1 failure/unhealthy, 2 usage error, 78 configuration error.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from pathlib import Path

from hlstream import STAGES
from hlstream.common.config import (
    ALL_COINS,
    Settings,
    add_config_flags,
    load_settings,
    prepare_dirs,
    settings_help,
)
from hlstream.common.errors import EXIT_CONFIG, ConfigError
from hlstream.common.lifecycle_io import ignore_stop_signals
from hlstream.common.log import setup_logging
from hlstream.tapcmd_io import KINDS

_STAGE_CHOICES = [*STAGES, "all"]
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SETTINGS_EPILOG = (
    "settings: --config FILE, and any setting as --kebab-name VALUE (e.g. --run-dir DIR); "
    "`hlstream help settings` lists them"
)


def _flag_env(args: argparse.Namespace) -> dict[str, str]:
    """Flags given on the command line, as HLSTREAM_* variables for the stages."""
    flags = vars(args).items()
    env = {
        f"HLSTREAM_{key[4:].upper()}": str(v)
        for key, v in flags
        if key[:4] == "cfg_" and v is not None
    }
    if getattr(args, "config", None):
        env["HLSTREAM_CONFIG"] = str(Path(args.config).resolve())
    return env


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _duration_ms(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s, 5m, 2h or 1d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its own options; the settings are one line at the end."""
    return commands.add_parser(name, help=help_text, description=help_text, epilog=_SETTINGS_EPILOG)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hlstream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in (
        ("run", "run all stages in the foreground under supervisord (Ctrl-C stops)"),
        ("start", "start all stages in the background"),
        ("stop", "stop all stages and supervisord; returns once every process is gone"),
        ("demo", "run the fake exchange + pipeline (5s,1m bars in ./demo-data); Ctrl-C stops"),
        ("metrics", "serve Prometheus metrics on 127.0.0.1:metrics_port until Ctrl-C"),
    ):
        add_config_flags(_command(commands, name, help_text), listed=False)
    restart = _command(commands, "restart", "restart one stage (or all)")
    restart.add_argument("stage", choices=_STAGE_CHOICES)
    add_config_flags(restart, listed=False)

    status = _command(commands, "status", "stage states and pipeline health (exit 1 if bad)")
    status.add_argument("--json", action="store_true", help="one JSON object for scripts")
    add_config_flags(status, listed=False)

    tap = _command(commands, "tap", "print live bus messages, one line each")
    tap.add_argument("kind", choices=KINDS)
    coin_help = "exact coin names (fills: addresses); default all"
    tap.add_argument("coin_list", nargs="*", metavar="COIN", help=coin_help)
    tap.add_argument("--interval", help="bars only: one interval, e.g. 5s")
    tap.add_argument("--json", action="store_true", help="one JSON object per message")
    tap.add_argument("--count", type=_positive_int, help="exit 0 after N lines (1 on timeout)")
    tap.add_argument("--timeout", type=float, help="exit after S seconds")
    tap.add_argument(
        "--since",
        type=_duration_ms,
        help="trades only: first the last N s/m/h/d from the tape (e.g. 5m), then live",
    )
    add_config_flags(tap, listed=False)

    backfill = _command(
        commands, "backfill", "one-shot REST backfill of --coins x --intervals (safe while running)"
    )
    backfill.add_argument("--hours", type=float, help="how far back (default backfill_hours)")
    add_config_flags(backfill, listed=False)

    verify = _command(commands, "verify", "check CSV files; exit 1 on any defect")
    verify.add_argument("files", nargs="*", type=Path, help="default: every *_data.csv")
    verify.add_argument("--interval", help="interval of the files (default: from each name)")
    verify.add_argument(
        "--venue", action="store_true", help="audit --coins x --intervals against the venue"
    )
    verify.add_argument("--from", dest="from_time", help="with --venue: UTC time or epoch ms")
    verify.add_argument("--to", dest="to_time", help="with --venue: UTC time or epoch ms")
    add_config_flags(verify, listed=False)
    repair = _command(commands, "repair", "apply pending revisions of --coins x --intervals")
    add_config_flags(repair, listed=False)
    rebuild = _command(
        commands,
        "rebuild",
        "re-derive the CSV files of any interval from the trade tape (atomic, idempotent)",
    )
    rebuild.add_argument("--interval", required=True, help="e.g. 5s, 15s, 1m, 4h (any)")
    rebuild.add_argument(
        "--from", dest="from_time", help="UTC time or epoch ms (default: tape start)"
    )
    rebuild.add_argument("--to", dest="to_time", help="UTC time or epoch ms (default: tape end)")
    rebuild.add_argument(
        "--check", action="store_true", help="change nothing; list rows that differ (exit 1)"
    )
    add_config_flags(rebuild, listed=False)
    keygen = commands.add_parser("curve-keygen", help="write a CURVE server secret key file")
    keygen.add_argument("path", type=Path, help="file to create (mode 0600)")
    helper = commands.add_parser("help", help="`hlstream help settings`: every setting explained")
    helper.add_argument("topic", nargs="?", choices=["settings"], help="what to explain")
    return parser


def _curve_keygen(path: Path) -> int:
    """Create a secret key file for `curve_secret_file` and print the public key for taps."""
    import zmq

    public, secret = zmq.curve_keypair()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.decode("ascii") + "\n")
    print(f"secret key written to {path}; public key for taps: {public.decode('ascii')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None or (args.command == "help" and args.topic is None):
        parser.print_help()
        return 0
    if args.command == "help":
        print(settings_help())
        return 0
    setup_logging("WARNING")
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"hlstream: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0
    finally:
        ignore_stop_signals()


def _dispatch(args: argparse.Namespace) -> int:
    from hlstream import supervise_io

    if args.command == "curve-keygen":
        return _curve_keygen(args.path)
    if args.command == "demo":
        return _demo(args)
    if args.command == "backfill":
        return _backfill(args)
    settings = load_settings(args)
    if args.command in ("verify", "tap", "status", "rebuild", "repair", "stop", "restart"):
        settings = _running_instance(args, settings)
    if args.command == "verify":
        return _verify(args, settings)
    if args.command == "rebuild":
        return _rebuild(args, settings)
    if args.command == "repair":
        from hlstream.repair_io import run_repair

        return run_repair(settings)
    if args.command == "tap":
        from hlstream.tapcmd_io import run_tap

        since_ms = None if args.since is None else _since_ms(args, settings)
        return run_tap(
            settings,
            args.kind,
            args.coin_list,
            interval=args.interval,
            as_json=args.json,
            count=args.count,
            timeout_s=args.timeout,
            since_ms=since_ms,
        )
    if args.command == "status":
        return _status(args, settings)
    if args.command == "metrics":
        if not settings.metrics_port:
            raise ConfigError("setting metrics_port: set a port (e.g. --metrics-port 9108)")
        from hlstream.metrics_io import serve_forever

        return serve_forever(settings)
    env = supervise_io.stage_env(settings, _flag_env(args))
    if args.command in ("run", "start"):
        supervise_io.refuse_if_running(settings)
        prepare_dirs(settings)
        _precheck_coins(settings)
        if args.command == "start":
            supervise_io.start_daemon(settings, env)
            return 0
        _maybe_metrics(settings)
        return supervise_io.run_foreground(settings, env)
    if not supervise_io.is_running(settings):
        print(f"hlstream: not running (run dir {settings.run_dir})", file=sys.stderr)
        return 0 if args.command == "stop" else 1
    if args.command == "stop":
        return supervise_io.stop_daemon(settings)
    return supervise_io.supervisorctl(settings, env, "restart", args.stage)


def _since_ms(args: argparse.Namespace, settings: Settings) -> int:
    """`tap trades --since`: when the catch-up starts; the coins default to the configured."""
    from hlstream.common.clock import now_ms

    if args.kind != "trades":
        raise ConfigError("--since: only `hlstream tap trades` can catch up from the tape")
    args.coin_list = args.coin_list or list(settings.coins)
    unknown = [coin for coin in args.coin_list if coin not in settings.coins]
    if unknown and settings.coins != (ALL_COINS,):
        raise ConfigError(f"--since: {', '.join(unknown)} not in setting coins")
    return int(now_ms() - args.since)


def _running_instance(args: argparse.Namespace, settings: Settings) -> Settings:
    """The default dirs, unless they are idle and `hlstream demo` is running: then the demo's."""
    from hlstream import supervise_io
    from hlstream.demo_io import DEMO_DEFAULTS

    defaults = Settings()
    if (settings.run_dir, settings.data_dir) != (
        defaults.run_dir.resolve(),
        defaults.data_dir.resolve(),
    ) or supervise_io.is_running(settings):
        return settings
    demo_args = copy.copy(args)
    for name, value in DEMO_DEFAULTS.items():
        if getattr(demo_args, f"cfg_{name}", None) is None and name != "backfill_hours":
            setattr(demo_args, f"cfg_{name}", value)
    demo = load_settings(demo_args)
    if not supervise_io.is_running(demo):
        return settings
    print(
        f"hlstream: {settings.run_dir} is idle; using the running demo "
        f"(run dir {demo.run_dir}, data dir {demo.data_dir})",
        file=sys.stderr,
    )
    return demo


def _precheck_coins(settings: Settings) -> None:
    """Refuse an unknown coin before any stage starts (and creates its files)."""
    from hlstream.common.rest_io import InfoClient
    from hlstream.common.universe_io import PRECHECK_TIMEOUT_S, precheck_coins

    client = InfoClient(settings.info_url, timeout_s=PRECHECK_TIMEOUT_S)
    try:
        reason = precheck_coins(settings, client)
    finally:
        client.close()
    if reason is not None:
        print(
            f"hlstream: coins not validated yet ({reason}); ingest checks them once the "
            "exchange answers",
            file=sys.stderr,
        )


def _maybe_metrics(settings: Settings) -> None:
    """Start the Prometheus exporter in this process when metrics_port is set."""
    if not settings.metrics_port:
        return
    from hlstream.metrics_io import METRICS_HOST, start_exporter

    try:
        start_exporter(settings)
    except OSError as exc:
        raise ConfigError(
            f"setting metrics_port: cannot listen on {METRICS_HOST}:{settings.metrics_port} "
            f"({exc.strerror})"
        ) from None
    print(f"hlstream: metrics on http://{METRICS_HOST}:{settings.metrics_port}/metrics")


def _status(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from hlstream.health_io import gather
    from hlstream.health_text import format_report
    from hlstream.relay_health import relay_line

    report = gather(settings)
    if args.json:
        print(json.dumps(msgspec.to_builtins(report), indent=2))
    else:
        relay = relay_line(settings.run_dir, report.now_ms)
        print(format_report(report) + ("" if relay is None else f"\n\n{relay}"))
    return 0 if report.healthy else 1


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from hlstream.verify_io import default_files, run_verify

    if args.venue:
        from hlstream.rebuild_io import parse_time
        from hlstream.venue_io import run_venue_audit

        from_ms = None if args.from_time is None else parse_time(args.from_time, "from")
        to_ms = None if args.to_time is None else parse_time(args.to_time, "to")
        return run_venue_audit(settings, from_ms, to_ms, sys.stdout, sys.stderr)

    files = list(args.files) or default_files(settings.data_dir)
    if not files:
        print(f"hlstream verify: no *_data.csv files in {settings.data_dir}", file=sys.stderr)
        return 1
    return run_verify(files, args.interval)


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from hlstream.common.timebucket import parse_interval
    from hlstream.rebuild_io import Request, parse_time, run_rebuild

    parse_interval(args.interval)  # ConfigError for a bad one
    request = Request(
        interval=args.interval,
        coins=settings.coins,
        from_ms=None if args.from_time is None else parse_time(args.from_time, "from"),
        to_ms=None if args.to_time is None else parse_time(args.to_time, "to"),
        check=args.check,
    )
    return run_rebuild(settings, request)


def _backfill(args: argparse.Namespace) -> int:
    """One-shot REST backfill in this process (services/writer/oneshot.py)."""
    from hlstream.services.writer import oneshot

    if args.hours is not None:
        args.cfg_backfill_hours = str(args.hours)
    return oneshot.backfill_command(load_settings(args))


def _demo(args: argparse.Namespace) -> int:
    from hlstream import demo_io, supervise_io

    demo_io.apply_demo_defaults(args, "ws://127.0.0.1:1", "http://127.0.0.1:1")
    settings = load_settings(args)  # validate before starting anything
    supervise_io.refuse_if_running(settings)
    demo_io.reset_demo_dirs(settings)
    print(
        f"hlstream demo: starting from empty {settings.data_dir} and {settings.run_dir} "
        "(the fake exchange makes up a new price history on every run)"
    )
    sim, ws_url, info_url = demo_io.start_sim(",".join(settings.coins), rate=4.0)
    try:
        demo_io.apply_demo_defaults(args, ws_url, info_url)
        settings = load_settings(args)
        print(
            f"hlstream demo: fake exchange at {ws_url}; bars in {settings.data_dir}; "
            f"try `hlstream tap bars --run-dir {settings.run_dir}` in another terminal"
        )
        _maybe_metrics(settings)
        env = supervise_io.stage_env(settings, _flag_env(args))
        return supervise_io.run_foreground(settings, env)
    finally:
        demo_io.stop_sim(sim)


if __name__ == "__main__":
    sys.exit(main())
