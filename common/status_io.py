"""Each stage's health snapshot as `run_dir/{service}-status.json`, replaced atomically.

`hlstream status` and monitoring probes read these files; they never see a half-written
one because each write goes to a temp file that is then renamed over the old one.
"""

from __future__ import annotations

import json
from pathlib import Path

from hlstream.common.atomic_io import write_atomic
from hlstream.common.errors import ProtocolError
from hlstream.common.status import StageStatus, status_from_wire, status_to_wire


def status_path(run_dir: Path, service: str) -> Path:
    return run_dir / f"{service}-status.json"


def write_status(run_dir: Path, status: StageStatus) -> None:
    """Atomically replace the stage's status file (best effort: errors are ignored)."""
    try:
        payload = json.dumps(status_to_wire(status), sort_keys=True).encode()
        write_atomic(status_path(run_dir, status.service), payload, durable=False)
    except OSError:
        pass


def read_status(run_dir: Path, service: str) -> StageStatus | None:
    """The last status of `service`, or None when missing, unreadable or malformed."""
    try:
        return status_from_wire(json.loads(status_path(run_dir, service).read_text()))
    except (OSError, ValueError, ProtocolError):
        return None
