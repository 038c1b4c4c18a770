"""`python -m hlstream.services.ingest`: exit 0 on SIGTERM/SIGINT, 78 on a configuration error
(an unknown coin, more subscriptions than the venue's per-IP limits), 1 on a crash."""

from __future__ import annotations

from collections.abc import Sequence

from hlstream.common.stage_io import Stage, stage_main
from hlstream.services.ingest.shell import SERVICE, Ingest


def _run(stage: Stage) -> None:
    Ingest(stage.settings, stage.stop, stage.log, stage.context, stage.clock).run()


def main(argv: Sequence[str] | None = None) -> None:
    # `coins = "all"` is expanded by the shell, from the meta fetch that checks the coins.
    stage_main(
        SERVICE, "Stream Hyperliquid trades onto the hlstream bus.", _run, argv, resolve_coins=False
    )


if __name__ == "__main__":
    main()
