"""`hlstream repair`: apply the pending revisions (`{file}.revisions`, common/revisions.py) of
the configured coins' files (`coins = "all"`: every file of the configured intervals).

Invariants:
- A file is replaced atomically (temp, fsync, rename) under its `flock(LOCK_EX)`, as the
  writer appends, and only when a revision changes a row: a second run is a no-op.
- A file the running writer appends to is never replaced under it (its open descriptor would
  keep appending to the old inode): repair refuses, as rebuild does.
- A row that matches neither side of its revision (a conflict) is left as it is, and the run
  exits 1. A repaired row is the venue's candle, so its `.inexact` entry goes.
"""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path
from typing import TextIO

from hlstream.common import inexact_io, revisions_io
from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.csvrow import HEADER_LINE, Row, parse_row
from hlstream.common.durable import write_atomic
from hlstream.common.errors import ConfigError, IntegrityError
from hlstream.common.filenames import csv_filename
from hlstream.common.revisions import Applied, apply_revisions
from hlstream.common.status_io import read_status
from hlstream.common.timebucket import format_window
from hlstream.rebuild import row_line
from hlstream.services.writer.dirlock import writer_running
from hlstream.verify import plural


def _rows(path: Path) -> list[Row]:
    with path.open("r", encoding="utf-8") as handle:
        if handle.readline() != HEADER_LINE:
            raise IntegrityError(f"{path} does not start with {HEADER_LINE.strip()!r}")
        return [parse_row(line) for line in handle if line.endswith("\n")]


def repair_file(path: Path) -> Applied | None:
    """Apply the file's revisions under its lock; None when it has none."""
    revisions = revisions_io.read(path)
    if not revisions:
        return None
    with path.open("ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        result = apply_revisions(_rows(path), revisions)
        if result.applied:
            write_atomic(path, (HEADER_LINE + "".join(map(row_line, result.rows))).encode())
    journal = inexact_io.read_journal(path)
    repaired = {rev.old.start_ms for rev in revisions} - {
        rev.old.start_ms for rev in result.conflicts
    }
    kept = {start: reason for start, reason in journal.items() if start not in repaired}
    if kept != journal:
        inexact_io.rewrite(path, kept)
    return result


def run_repair(settings: Settings, out: TextIO = sys.stdout) -> int:
    """Repair every configured file with revisions; print a line per file. Exit code."""
    files = (
        [
            (interval, path)
            for interval in settings.intervals
            for path in sorted(settings.data_dir.glob(f"*_{interval}_data.csv"))
        ]
        if settings.coins == (ALL_COINS,)
        else [
            (interval, settings.data_dir / csv_filename(coin, interval))
            for coin in settings.coins
            for interval in settings.intervals
        ]
    )
    with_revisions = [(i, p) for i, p in files if revisions_io.revisions_path(p).exists()]
    if writer_running(settings.data_dir):
        status = read_status(settings.run_dir, "writer")
        live = set(settings.intervals) | {
            f.interval for f in (status.files if status else {}).values()
        }
        if any(interval in live for interval, _ in with_revisions):
            raise ConfigError(
                f"the running writer appends to the files in {settings.data_dir}; "
                "stop the pipeline first (hlstream stop)"
            )
    conflicts = 0
    for _, path in with_revisions:
        if not path.exists():
            continue
        result = repair_file(path)
        if result is None:
            continue
        conflicts += len(result.conflicts)
        for revision in result.conflicts:
            out.write(
                f"{path}: conflict: the row at {format_window(revision.old.start_ms)} "
                "matches neither side of its revision; left as it is\n"
            )
        out.write(
            f"{path}: {plural(result.applied, 'row')} revised, {result.already} already, "
            f"{len(result.conflicts)} conflicts\n"
        )
    if not with_revisions:
        out.write(f"hlstream repair: no revisions in {settings.data_dir}\n")
    return 1 if conflicts else 0
