"""What each `hlstream` command does (hlstream/cli.py parses and dispatches)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import sys
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from hlstream.common.config import ALL_COINS, Settings, load_settings
from hlstream.common.errors import ConfigError


def flag_env(args: argparse.Namespace) -> dict[str, str]:
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


def curve_keygen(args: argparse.Namespace) -> int:
    """Create a secret key file for `curve_secret_file` and print the public key for taps."""
    import zmq

    path = args.path
    public, secret = zmq.curve_keypair()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.decode("ascii") + "\n")
    print(f"secret key written to {path}; public key for taps: {public.decode('ascii')}")
    return 0


def tap(args: argparse.Namespace, settings: Settings) -> int:
    """`hlstream tap`: the bus, or with `--nats` the relay's JetStream streams."""
    from hlstream.common.clock import now_ms
    from hlstream.tapcmd_io import TapRequest, run_nats_tap, run_tap

    if args.since is not None and not args.nats:  # a catch-up from the tape
        if args.kind != "trades":
            raise ConfigError("--since: only `hlstream tap trades` can catch up from the tape")
        args.coin_list = args.coin_list or list(settings.coins)
        unknown = [coin for coin in args.coin_list if coin not in settings.coins]
        if unknown and settings.coins != (ALL_COINS,):
            raise ConfigError(f"--since: {', '.join(unknown)} not in setting coins")
    since_ms = None if args.since is None else int(now_ms() - args.since)
    request = TapRequest(
        args.kind, args.coin_list, args.interval, args.json, args.count, args.timeout, since_ms
    )
    return run_nats_tap(settings, args.nats, request) if args.nats else run_tap(settings, request)


def running_instance(args: argparse.Namespace, settings: Settings) -> Settings:
    """The default dirs, unless they are idle and `hlstream demo` is running: then the demo's."""
    from hlstream import supervise_io
    from hlstream.demo_io import apply_demo_defaults

    defaults = Settings()
    if (settings.run_dir, settings.data_dir) != (
        defaults.run_dir.resolve(),
        defaults.data_dir.resolve(),
    ) or supervise_io.is_running(settings):
        return settings
    demo_args = copy.copy(args)
    apply_demo_defaults(demo_args)
    demo = load_settings(demo_args)
    if not supervise_io.is_running(demo):
        return settings
    print(
        f"hlstream: {settings.run_dir} is idle; using the running demo "
        f"(run dir {demo.run_dir}, data dir {demo.data_dir})",
        file=sys.stderr,
    )
    return demo


def precheck_coins(settings: Settings) -> None:
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


def maybe_metrics(settings: Settings) -> None:
    """Start the Prometheus exporter in this process when metrics_port is set."""
    if settings.metrics_port:
        start_metrics(settings)


def start_metrics(settings: Settings) -> WSGIServer:
    """Start the Prometheus exporter in this process; one-line ConfigError if the port is taken."""
    from hlstream.metrics_io import METRICS_HOST, start_exporter

    try:
        server = start_exporter(settings)
    except OSError as exc:
        raise ConfigError(
            f"setting metrics_port: cannot listen on {METRICS_HOST}:{settings.metrics_port} "
            f"({exc.strerror})"
        ) from None
    print(f"hlstream: metrics on http://{METRICS_HOST}:{settings.metrics_port}/metrics", flush=True)
    return server


def command_name() -> str:
    """How to run `hlstream` from here: `.venv/bin/hlstream` when it is not on PATH."""
    path = Path(sys.argv[0])
    if path.name != "hlstream" or shutil.which("hlstream") == str(path.resolve()):
        return "hlstream"
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def status(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from hlstream.health_io import gather
    from hlstream.health_text import format_report, relay_line
    from hlstream.services.relay.files_io import read_relay_status

    report = gather(settings)
    if args.json:
        print(json.dumps(msgspec.to_builtins(report), indent=2))
    else:
        relay = relay_line(read_relay_status(settings.run_dir), report.now_ms)
        print(format_report(report) + ("" if relay is None else f"\n\n{relay}"))
    return 0 if report.healthy else 1


def verify(args: argparse.Namespace, settings: Settings) -> int:
    from hlstream.verify import FILE_SUFFIX
    from hlstream.verify_io import run_verify

    if args.venue:
        from hlstream.rebuild_io import parse_time
        from hlstream.venue_io import run_venue_audit

        from_ms = None if args.from_time is None else parse_time(args.from_time, "from")
        to_ms = None if args.to_time is None else parse_time(args.to_time, "to")
        return run_venue_audit(settings, from_ms, to_ms, sys.stdout, sys.stderr)

    files = list(args.files) or sorted(settings.data_dir.glob("*" + FILE_SUFFIX))
    if not files:
        print(f"hlstream verify: no *_data.csv files in {settings.data_dir}", file=sys.stderr)
        return 1
    return run_verify(files, args.interval)


def repair(args: argparse.Namespace, settings: Settings) -> int:
    from hlstream.repair_io import run_repair

    return run_repair(settings)


def compact(args: argparse.Namespace, settings: Settings) -> int:
    from hlstream.common.clock import now_ms
    from hlstream.common.errors import IntegrityError
    from hlstream.common.log import EventLog
    from hlstream.common.tape.compact_io import compact_closed
    from hlstream.common.tape.format import check_day, segment_day

    day = segment_day(now_ms())
    if args.today is not None:
        try:
            day = min(day, check_day(args.today).isoformat())  # a later day would close open ones
        except ValueError as exc:
            raise ConfigError(f"--today: {exc}") from None
    try:
        report = compact_closed(settings.data_dir, day, EventLog("compact"))
    except IntegrityError as exc:
        print(f"hlstream: error: {exc}", file=sys.stderr)
        return 1
    for c in report.done:
        sizes = f"{c.csv_bytes} -> {c.parquet_bytes} bytes"
        print(f"compacted {c.coin} {c.day}: {c.records} records, {sizes}")
    for line in report.failed:
        print(f"hlstream: kept as CSV: {line}", file=sys.stderr)
    return 1 if report.failed else 0


def export(args: argparse.Namespace, settings: Settings) -> int:
    from hlstream.common.timebucket import parse_interval
    from hlstream.export_io import ExportRequest, run_export
    from hlstream.rebuild_io import parse_time

    if args.kind == "bars":
        if args.interval is None:
            raise ConfigError("export bars needs --interval")
        parse_interval(args.interval)  # ConfigError for a bad one
    request = ExportRequest(
        kind=args.kind,
        coins=settings.coins,
        from_ms=parse_time(args.from_time, "from"),
        to_ms=parse_time(args.to_time, "to"),
        interval=args.interval,
        fmt=args.fmt,
        out=args.out,
    )
    return run_export(settings, request)


def rebuild(args: argparse.Namespace, settings: Settings) -> int:
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


def backfill(args: argparse.Namespace) -> int:
    """One-shot REST backfill in this process (services/writer/oneshot.py)."""
    from hlstream.services.writer import oneshot

    if args.hours is not None:
        args.cfg_backfill_hours = str(args.hours)
    return oneshot.backfill_command(load_settings(args))


def demo(args: argparse.Namespace) -> int:
    from hlstream import demo_io, supervise_io

    demo_io.apply_demo_defaults(args, ws_url="ws://127.0.0.1:1", info_url="http://127.0.0.1:1")
    settings = load_settings(args)  # validate before starting anything
    supervise_io.refuse_if_running(settings)
    demo_io.reset_demo_dirs(settings)
    print(
        f"hlstream demo: starting from empty {settings.data_dir} and {settings.run_dir} "
        "(the fake exchange makes up a new price history on every run)"
    )
    sim, ws_url, info_url = demo_io.start_sim(",".join(settings.coins), rate=4.0)
    try:
        demo_io.apply_demo_defaults(args, ws_url=ws_url, info_url=info_url)
        settings = load_settings(args)
        print(
            f"hlstream demo: fake exchange at {ws_url}; bars in {settings.data_dir}; "
            f"try `{command_name()} tap bars` in another terminal (it finds the demo)"
        )
        maybe_metrics(settings)
        env = supervise_io.stage_env(settings, flag_env(args))
        return supervise_io.run_foreground(settings, env)
    finally:
        demo_io.stop_sim(sim)
