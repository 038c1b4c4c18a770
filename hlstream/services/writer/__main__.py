"""`python -m hlstream.services.writer`: run the writer stage until SIGTERM (see stage_main)."""

from __future__ import annotations

from collections.abc import Sequence

from hlstream.common.stage_io import Stage, stage_main
from hlstream.services.writer.shell import Writer


def _run(stage: Stage) -> None:
    Writer(stage).run()


def main(argv: Sequence[str] | None = None) -> None:
    stage_main(
        "writer", "hlstream writer: bars from the aggregator -> fsynced CSV files", _run, argv
    )


if __name__ == "__main__":
    main()
