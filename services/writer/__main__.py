"""`python -m services.writer`: load config, set up logging, run the writer until SIGTERM.

`python -m services.writer backfill ...` runs the one-shot backfill (oneshot.py) instead.

Exit codes: 0 clean stop, 1 crash, 78 configuration error (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys

from common.config import add_config_flags, describe, load_settings, prepare_dirs
from common.lifecycle_io import StopFlag, guard_supervised_stage, ignore_stop_signals, run_main
from common.log import event_log, setup_logging
from common.rest_io import InfoClient
from common.universe_io import resolve_settings_coins
from services.writer.shell import Writer


def main(argv: list[str] | None = None) -> None:
    """Parse flags and run the writer stage (`backfill ...`: the one-shot backfill instead)."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["backfill"]:
        from services.writer import oneshot

        code = oneshot.main(args_in[1:])
        ignore_stop_signals()
        sys.exit(code)
    parser = argparse.ArgumentParser(
        prog="python -m services.writer",
        description="hlstream writer: bars from the aggregator -> fsynced CSV files",
    )
    add_config_flags(parser)
    args = parser.parse_args(argv)
    setup_logging()  # so a config error is still one formatted line on stderr
    log = event_log("writer")
    guard_supervised_stage()
    stop = StopFlag().install()

    def body() -> None:
        settings = load_settings(args)
        prepare_dirs(settings)
        setup_logging(settings.log_level, settings.log_json)
        settings = resolve_settings_coins(
            settings, InfoClient(settings.info_url), log=log, should_stop=stop.is_set
        )
        log.info("config", settings=describe(settings))
        Writer(settings, stop, log).run()

    run_main(log, body)


if __name__ == "__main__":
    main()
