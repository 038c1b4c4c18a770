"""The `hlstream` command: run, start, stop, restart STAGE, status.

Exit codes: 0 ok, 1 failure/unhealthy, 2 usage error, 78 configuration error.
"""

from __future__ import annotations

import argparse
import sys

from common.config import add_config_flags, load_settings, prepare_dirs
from common.errors import EXIT_CONFIG, ConfigError
from common.log import setup_logging


def _flag_env(args: argparse.Namespace) -> dict[str, str]:
    """Flags given on the command line, as HLSTREAM_* variables for the stages."""
    env = {}
    for key, value in vars(args).items():
        if key.startswith("cfg_") and value is not None:
            env["HLSTREAM_" + key[4:].upper()] = str(value)
    if getattr(args, "config", None):
        from pathlib import Path

        env["HLSTREAM_CONFIG"] = str(Path(args.config).resolve())
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hlstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "run all stages in the foreground under supervisord (Ctrl-C stops)"),
        ("start", "start all stages in the background"),
        ("stop", "stop all stages and supervisord"),
        ("status", "show each stage's state"),
    ):
        add_config_flags(commands.add_parser(name, help=help_text))
    restart = commands.add_parser("restart", help="restart one stage (or all)")
    restart.add_argument("stage", choices=["ingest", "aggregator", "writer", "all"])
    add_config_flags(restart)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("WARNING")
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"hlstream: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _dispatch(args: argparse.Namespace) -> int:
    from common import supervise_io

    settings = load_settings(args)
    env = supervise_io.stage_env(settings, _flag_env(args))
    if args.command == "run":
        prepare_dirs(settings)
        return supervise_io.run_foreground(settings, env)
    if args.command == "start":
        prepare_dirs(settings)
        supervise_io.start_daemon(settings, env)
        return 0
    if not supervise_io.is_running(settings):
        print(f"hlstream: not running (run dir {settings.run_dir})", file=sys.stderr)
        return 0 if args.command == "stop" else 1
    if args.command == "stop":
        return supervise_io.supervisorctl(settings, env, "shutdown")
    if args.command == "restart":
        return supervise_io.supervisorctl(settings, env, "restart", args.stage)
    return supervise_io.supervisorctl(settings, env, "status")


if __name__ == "__main__":
    sys.exit(main())
