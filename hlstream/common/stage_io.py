"""`stage_main()`: the one way the stages start. Settings, stop flag, logger, clock and zmq
context are handed to the stage's `run` as a `Stage`; `run_main` maps the outcome to an exit
code (0 clean stop, 1 crash, 78 configuration error).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from hlstream.common.clock import Clock, SystemClock
from hlstream.common.config import Settings, describe, load_settings, prepare_dirs
from hlstream.common.flags import add_config_flags
from hlstream.common.lifecycle_io import StopFlag, guard_supervised_stage, run_main
from hlstream.common.log import EventLog, setup_logging
from hlstream.common.rest_io import InfoClient
from hlstream.common.universe_io import resolve_settings_coins


@dataclass
class Stage:
    """What every stage shell is given instead of reaching for globals."""

    settings: Settings
    stop: StopFlag
    log: EventLog
    clock: Clock
    context: zmq.Context[Any]


def stage_main(
    service: str,
    description: str,
    run: Callable[[Stage], None],
    argv: Sequence[str] | None = None,
    *,
    resolve_coins: bool = True,
) -> None:
    """Start one stage and exit with its code; `resolve_coins` expands `all` via meta first."""
    parser = argparse.ArgumentParser(
        prog=f"python -m hlstream.services.{service}", description=description
    )
    add_config_flags(parser)
    args = parser.parse_args(argv)
    setup_logging()  # so a config error is still one formatted line on stderr
    log = EventLog(service)
    guard_supervised_stage()
    stop = StopFlag().install()

    def body() -> None:
        settings = load_settings(args)
        prepare_dirs(settings)
        setup_logging(settings.log_level, settings.log_json)
        if resolve_coins:
            settings = resolve_settings_coins(
                settings, InfoClient(settings.info_url), log=log, should_stop=stop.is_set
            )
        log.info("config", settings=describe(settings))
        context: zmq.Context[Any] = zmq.Context()
        try:
            run(Stage(settings, stop, log, SystemClock(), context))
        finally:
            context.destroy()  # closes what a shell left open, each with its own linger

    run_main(log, body)
