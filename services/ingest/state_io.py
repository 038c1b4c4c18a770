"""Dedupe state on disk.

`run_dir/ingest-dedupe.msgpack` holds `Deduper.to_state()`, replaced atomically
(common/atomic_io), so a restart never republishes a trade the last run published. A missing
file is normal (first start); an unreadable or corrupt one is logged and ignored: the replay
then shows up as new trades only if they are really unknown, and a gap marker covers the rest.
"""

from __future__ import annotations

from pathlib import Path

import msgpack

from hlstream.common.atomic_io import write_atomic
from hlstream.common.errors import ProtocolError
from hlstream.common.log import EventLog
from hlstream.services.ingest.core import Deduper

STATE_FILE = "ingest-dedupe.msgpack"


def save_deduper(path: Path, deduper: Deduper, log: EventLog) -> bool:
    """Write the dedupe state atomically; False (logged, rate-limited) if the write failed."""
    try:
        write_atomic(path, msgpack.packb(deduper.to_state(), use_bin_type=True))
    except OSError as exc:
        log.warning_limited("state_write", 60.0, "dedupe_save_failed", error=str(exc))
        return False
    return True


def load_deduper(path: Path, log: EventLog) -> Deduper | None:
    """The saved Deduper, or None when there is none or it cannot be used (logged)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.info("dedupe_state_absent", path=str(path))
        return None
    except OSError as exc:
        log.warning("dedupe_state_unreadable", path=str(path), error=str(exc))
        return None
    try:
        deduper = Deduper.from_state(msgpack.unpackb(data, raw=False, strict_map_key=False))
    except (ValueError, TypeError, msgpack.UnpackException, ProtocolError) as exc:
        log.warning("dedupe_state_corrupt", path=str(path), error=f"{exc}"[:200])
        return None
    log.info("dedupe_state_loaded", keys=deduper.key_count(), coins=len(deduper.newest_by_coin()))
    return deduper
