"""`python -m hlstream.services.ingest`: run the ingest stage (see stage_main).

Exit codes: 0 on SIGTERM/SIGINT (after saving dedupe state), 78 on a configuration error
(including an unknown coin, or more subscriptions than the venue's per-IP limits), 1 on a
crash. `coins = "all"` is expanded inside the shell from the same meta fetch that validates
the coins, so stage_main does not resolve them first.
"""

from __future__ import annotations

from collections.abc import Sequence

from hlstream.common.stage_io import Stage, stage_main
from hlstream.services.ingest.shell import SERVICE, Ingest


def _run(stage: Stage) -> None:
    Ingest(stage.settings, stage.stop, stage.log, stage.context, stage.clock).run()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ingest stage."""
    stage_main(
        SERVICE, "Stream Hyperliquid trades onto the hlstream bus.", _run, argv, resolve_coins=False
    )


if __name__ == "__main__":
    main()
