"""`python -m hlstream.services.relay`: run the relay stage until SIGTERM (see stage_main).

It works only when `nats_url` or `postgres_dsn` is set; with neither it exits 0 once
supervisord's `startsecs` has passed (an expected exit, never restarted).
Exit codes: 0 clean stop, 1 crash, 78 configuration error.
"""

from __future__ import annotations

from collections.abc import Sequence

from hlstream.common.lifecycle_io import SUPERVISOR_STARTSECS, process_age_s
from hlstream.common.sinks import has_sink, sink_secrets
from hlstream.common.stage_io import Stage, stage_main
from hlstream.services.relay.shell import Relay

STARTSECS_MARGIN_S = 0.5


def _run(stage: Stage) -> None:
    if not has_sink(stage.settings):
        stage.log.info("no_sink_configured")
        stage.stop.wait(max(0.0, SUPERVISOR_STARTSECS + STARTSECS_MARGIN_S - process_age_s()))
        return
    Relay(stage.settings, sink_secrets(stage.settings), stage.stop, stage.log, stage.clock).run()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the relay stage."""
    stage_main(
        "relay",
        "hlstream relay: trade tape and bar files -> NATS JetStream, PostgreSQL",
        _run,
        argv,
    )


if __name__ == "__main__":
    main()
