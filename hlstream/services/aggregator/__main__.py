"""`python -m hlstream.services.aggregator`: run the aggregator stage (see stage_main)."""

from __future__ import annotations

from collections.abc import Sequence

from hlstream.common.stage_io import Stage, stage_main


def _run(stage: Stage) -> None:
    from hlstream.services.aggregator.shell import Aggregator

    Aggregator(stage).run()


def main(argv: Sequence[str] | None = None) -> None:
    stage_main(
        "aggregator", "hlstream aggregator: trades -> bars for taps and the writer", _run, argv
    )


if __name__ == "__main__":
    main()
