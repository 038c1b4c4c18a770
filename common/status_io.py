"""Each stage's health snapshot as `run_dir/{service}-status.json`, replaced atomically.

`hlstream status` and monitoring probes read these files; they never see a half-written
one because each write goes to a temp file that is then renamed over the old one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hlstream.common.atomic_io import write_atomic


def status_path(run_dir: Path, service: str) -> Path:
    return run_dir / f"{service}-status.json"


def write_status(run_dir: Path, service: str, data: dict[str, Any]) -> None:
    """Atomically replace the status file of `service` (best effort: errors are ignored)."""
    try:
        payload = json.dumps(data, sort_keys=True, default=str).encode()
        write_atomic(status_path(run_dir, service), payload, durable=False)
    except OSError:
        pass


def read_status(run_dir: Path, service: str) -> dict[str, Any] | None:
    """The last status of `service`, or None when missing or unreadable."""
    try:
        data = json.loads(status_path(run_dir, service).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
