"""Collect the health report of one run dir: supervisord's process table + status files."""

from __future__ import annotations

import xmlrpc.client

from hlstream import STAGES, supervise_io
from hlstream.common import inexact_io
from hlstream.common.clock import now_ms
from hlstream.common.config import Settings
from hlstream.common.status_io import read_status
from hlstream.health import ProcessInfo, Report, build_report


def gather(settings: Settings) -> Report:
    """The health report (hlstream/health.py) as of now."""
    running = supervise_io.is_running(settings)
    processes: dict[str, ProcessInfo] = {}
    if running:
        try:
            processes = supervise_io.process_states(settings)
        except (OSError, xmlrpc.client.Error):
            running = False
    statuses = {name: read_status(settings.run_dir, name) for name in STAGES}
    writer = statuses.get("writer")
    names = [] if writer is None else list(writer.files)
    inexact = {name: len(inexact_io.read_journal(settings.data_dir / name)) for name in names}
    return build_report(settings, running, processes, statuses, now_ms(), inexact)
