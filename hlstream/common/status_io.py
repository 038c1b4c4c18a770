"""`run_dir/{service}-status.json`: the StageStatus as JSON with sorted keys, replaced
atomically so a reader never sees a half-written one."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import msgspec

from hlstream.common.durable import write_atomic
from hlstream.common.status import StageStatus

_READ = msgspec.json.Decoder(StageStatus)


def status_path(run_dir: Path, service: str) -> Path:
    return run_dir / f"{service}-status.json"


def write_status(run_dir: Path, status: StageStatus) -> None:
    """Atomically replace the stage's status file (best effort: errors are ignored)."""
    with contextlib.suppress(OSError):
        payload = json.dumps(msgspec.to_builtins(status), sort_keys=True).encode()
        write_atomic(status_path(run_dir, status.service), payload, durable=False)


def read_status(run_dir: Path, service: str) -> StageStatus | None:
    """The last status of `service`, or None when missing, unreadable or malformed."""
    try:
        return _READ.decode(status_path(run_dir, service).read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
