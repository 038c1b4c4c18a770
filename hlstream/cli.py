"""The `hlstream` command: the one front door.

    run | start | stop | restart STAGE     the pipeline under supervisord
    status [--json]                         stages + pipeline health; exit 1 when unhealthy
    tap KIND [COIN...] [--nats URL]         live bus (or JetStream) messages, one line each
    backfill [--hours N]                    one-shot REST backfill with a progress bar
    verify [FILE...]                        CSV integrity; exit 1 on any defect
    verify --venue [--from T] [--to T]      rows vs the venue's candles; exit 1 on a mismatch
    rebuild --interval I [--check]          re-derive CSV files of any interval from the tape
    repair                                  apply pending revisions ({file}.revisions)
    compact                                 closed tape days to Parquet (ingest does it hourly)
    export trades|bars --from T --to T --out PATH   one Parquet or CSV file for research
    demo                                    fake exchange + pipeline, no internet needed
    metrics                                 Prometheus exporter alone (needs metrics_port)
    help settings                           every setting, its flag, variable and default

Every command takes `--config FILE` and one `--kebab-name VALUE` flag per setting.
Exit codes: 0 ok, 1 failure/unhealthy, 2 usage error, 78 configuration error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hlstream import STAGES, commands
from hlstream.common.config import load_settings, prepare_dirs
from hlstream.common.errors import EXIT_CONFIG, ConfigError
from hlstream.common.flags import add_config_flags, settings_help
from hlstream.common.lifecycle_io import ignore_stop_signals
from hlstream.common.log import setup_logging
from hlstream.tapcmd_io import KINDS

_STAGE_CHOICES = [*STAGES, "all"]
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SETTINGS_EPILOG = (
    "settings: --config FILE, and any setting as --kebab-name VALUE (e.g. --run-dir DIR); "
    "`hlstream help settings` lists them"
)


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


AddArgument = Callable[[argparse.ArgumentParser], object]


def _arg(*flags: str, **options: Any) -> AddArgument:
    return lambda parser: parser.add_argument(*flags, **options)


_EPOCH = "UTC time or epoch ms"
_COIN_HELP = "exact coin names (fills: addresses); default all"
# Each command and its help, in the order `hlstream --help` lists them; its --help shows its
# own arguments, then the settings as one line.
_COMMANDS = {
    "run": "run all stages in the foreground under supervisord (Ctrl-C stops)",
    "start": "start all stages in the background",
    "stop": "stop all stages and supervisord; returns once every process is gone",
    "demo": "run the fake exchange + pipeline (5s,1m bars in ./demo-data); Ctrl-C stops",
    "metrics": "serve Prometheus metrics on 127.0.0.1:metrics_port until Ctrl-C",
    "restart": "restart one stage (or all)",
    "status": "stage states and pipeline health (exit 1 if bad)",
    "tap": "print live bus messages, one line each",
    "backfill": "one-shot REST backfill of --coins x --intervals (safe while running)",
    "verify": "check CSV files; exit 1 on any defect",
    "repair": "apply pending revisions of --coins x --intervals",
    "rebuild": "re-derive the CSV files of any interval from the trade tape (atomic, idempotent)",
    "compact": "compact closed tape days to Parquet now (safe while running; ingest does it "
    "hourly)",
    "export": "write the trades (tape) or bars of --coins in [--from, --to) to one file; "
    "exit 1, writing nothing, if any of it is not kept",
}
_ARGUMENTS: dict[str, list[AddArgument]] = {
    "restart": [_arg("stage", choices=_STAGE_CHOICES)],
    "status": [_arg("--json", action="store_true", help="one JSON object for scripts")],
    "tap": [
        _arg("kind", choices=KINDS),
        _arg("coin_list", nargs="*", metavar="COIN", help=_COIN_HELP),
        _arg("--interval", help="bars only: one interval, e.g. 5s"),
        _arg("--json", action="store_true", help="one JSON object per message"),
        _arg("--count", type=_positive_int, help="exit 0 after N lines (1 on timeout)"),
        _arg("--timeout", type=float, help="exit after S seconds"),
        _arg(
            "--since",
            type=_duration_ms,
            help="trades only: first the last N s/m/h/d from the tape (e.g. 5m), then live; "
            "with --nats: trades, gaps or bars from the stream",
        ),
        _arg("--nats", metavar="URL", help="read the relay's JetStream streams (any host) at URL"),
    ],
    "backfill": [_arg("--hours", type=float, help="how far back (default backfill_hours)")],
    "verify": [
        _arg("files", nargs="*", type=Path, help="default: every *_data.csv"),
        _arg("--interval", help="interval of the files (default: from each name)"),
        _arg("--venue", action="store_true", help="audit --coins x --intervals against the venue"),
        _arg("--from", dest="from_time", help=f"with --venue: {_EPOCH}"),
        _arg("--to", dest="to_time", help=f"with --venue: {_EPOCH}"),
    ],
    "rebuild": [
        _arg("--interval", required=True, help="e.g. 5s, 15s, 1m, 4h (any)"),
        _arg("--from", dest="from_time", help=f"{_EPOCH} (default: tape start)"),
        _arg("--to", dest="to_time", help=f"{_EPOCH} (default: tape end)"),
        _arg("--check", action="store_true", help="change nothing; list rows that differ (exit 1)"),
    ],
    "compact": [
        _arg(
            "--today", help="count closed days back from this UTC day, not a later one (YYYY-MM-DD)"
        )
    ],
    "export": [
        _arg("kind", choices=["trades", "bars"]),
        _arg("--from", dest="from_time", required=True, help=_EPOCH),
        _arg("--to", dest="to_time", required=True, help=_EPOCH),
        _arg("--interval", help="of the bars (required for bars)"),
        _arg("--format", dest="fmt", choices=["parquet", "csv"], default="parquet"),
        _arg("--out", type=Path, required=True, help="file to write"),
    ],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hlstream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in _COMMANDS.items():
        command = subparsers.add_parser(name, help=text, description=text, epilog=_SETTINGS_EPILOG)
        for add in _ARGUMENTS.get(name, []):
            add(command)
        add_config_flags(command, listed=False)
    keygen = subparsers.add_parser("curve-keygen", help="write a CURVE server secret key file")
    keygen.add_argument("path", type=Path, help="file to create (mode 0600)")
    helper = subparsers.add_parser("help", help="`hlstream help settings`: every setting explained")
    helper.add_argument("topic", nargs="?", choices=["settings"], help="what to explain")
    return parser


_STANDALONE = {
    "curve-keygen": commands.curve_keygen,
    "demo": commands.demo,
    "backfill": commands.backfill,
}
_WITH_SETTINGS = {
    "verify": commands.verify,
    "rebuild": commands.rebuild,
    "repair": commands.repair,
    "compact": commands.compact,
    "export": commands.export,
    "tap": commands.tap,
    "status": commands.status,
}


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

    if args.command in _STANDALONE:
        return _STANDALONE[args.command](args)
    settings = load_settings(args)
    if args.command not in ("run", "start", "metrics"):  # finds a running demo
        settings = commands.running_instance(args, settings)
    if args.command in _WITH_SETTINGS:
        return _WITH_SETTINGS[args.command](args, settings)
    if args.command == "metrics":
        if not settings.metrics_port:
            raise ConfigError("setting metrics_port: set a port (e.g. --metrics-port 9108)")
        from hlstream.metrics_io import serve_forever

        return serve_forever(commands.start_metrics(settings))
    env = supervise_io.stage_env(settings, commands.flag_env(args))
    if args.command in ("run", "start"):
        supervise_io.refuse_if_running(settings)
        prepare_dirs(settings)
        commands.precheck_coins(settings)
        if args.command == "start":
            supervise_io.start_daemon(settings, env)
            return 0
        commands.maybe_metrics(settings)
        return supervise_io.run_foreground(settings, env)
    if not supervise_io.is_running(settings):
        print(f"hlstream: not running (run dir {settings.run_dir})", file=sys.stderr)
        return 0 if args.command == "stop" else 1
    if args.command == "stop":
        return supervise_io.stop_daemon(settings)
    return supervise_io.supervisorctl(settings, env, "restart", args.stage)


if __name__ == "__main__":
    sys.exit(main())
