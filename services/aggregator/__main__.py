"""`python -m services.aggregator`: load config, set up logging, run the aggregator shell."""

from __future__ import annotations

import argparse

from common.config import add_config_flags, describe, load_settings, prepare_dirs
from common.lifecycle_io import StopFlag, guard_supervised_stage, run_main
from common.log import event_log, setup_logging
from common.rest_io import InfoClient
from common.universe_io import resolve_settings_coins

log = event_log("aggregator")


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.aggregator")
    add_config_flags(parser)
    args = parser.parse_args()
    guard_supervised_stage()
    stop = StopFlag().install()
    settings = load_settings(args)
    setup_logging(settings.log_level, settings.log_json)
    settings = resolve_settings_coins(
        settings, InfoClient(settings.info_url), log=log, should_stop=stop.is_set
    )
    prepare_dirs(settings)
    log.info("config", settings=describe(settings))
    from services.aggregator.shell import Aggregator

    Aggregator(settings, stop).run()


if __name__ == "__main__":
    run_main(log, _main)
