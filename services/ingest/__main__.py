"""`python -m services.ingest`: load config, set up logging, run the ingest shell.

Exit codes: 0 on SIGTERM/SIGINT (after saving dedupe state), 78 on a configuration error
(including an unknown coin, or more subscriptions than the venue's per-IP limits), 1 on a
crash. `coins = "all"` is expanded inside the shell from the same meta fetch that validates
the coins.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import zmq

from common.config import add_config_flags, describe, load_settings, prepare_dirs
from common.lifecycle_io import StopFlag, guard_supervised_stage, run_main
from common.log import event_log, setup_logging
from services.ingest.shell import SERVICE, run_ingest


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags and run ingest until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m services.ingest",
        description="Stream Hyperliquid trades onto the hlstream bus.",
    )
    add_config_flags(parser)
    args = parser.parse_args(argv)
    setup_logging()
    log = event_log(SERVICE)
    guard_supervised_stage()
    stop = StopFlag().install()

    def body() -> None:
        settings = load_settings(args)
        prepare_dirs(settings)
        setup_logging(settings.log_level, settings.log_json)
        log.info("config", settings=describe(settings))
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            run_ingest(settings, stop, log, context)
        finally:
            context.term()

    run_main(log, body)


if __name__ == "__main__":
    main()
