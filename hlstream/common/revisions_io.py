"""Reading and appending `{file}.revisions`, and applying them to their CSV file (`hlstream
repair`, and the writer at the day rollover). Applying replaces the CSV file atomically under
its `flock(LOCK_EX)`, as the writer appends, and only when a revision changes a row (a
writer's descriptor follows the new file: csvfile_io.py); a repaired row is the venue's
candle, so its `.inexact` entry goes.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterable
from pathlib import Path

from hlstream.common import inexact_io
from hlstream.common.csvrow import HEADER_LINE, Row, format_row, parse_row
from hlstream.common.durable import append_durably, write_atomic
from hlstream.common.errors import IntegrityError
from hlstream.common.revisions import (
    HEADER,
    SUFFIX,
    Applied,
    Revision,
    apply_revisions,
    format_revision,
    parse_revisions,
)


def revisions_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + SUFFIX)


def append(csv_path: Path, revisions: Iterable[Revision]) -> None:
    """Append revisions durably; nothing is written for none."""
    data = "".join(map(format_revision, revisions)).encode()
    if data:
        append_durably(revisions_path(csv_path), data, f"{HEADER}\n".encode())


def read(csv_path: Path) -> list[Revision]:
    """Every revision recorded for `csv_path`, in order; [] without a revisions file."""
    try:
        text = revisions_path(csv_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return parse_revisions(text)


def _rows(path: Path) -> list[Row]:
    with path.open("r", encoding="utf-8") as handle:
        if handle.readline() != HEADER_LINE:
            raise IntegrityError(f"{path} does not start with {HEADER_LINE.strip()!r}")
        return [parse_row(line) for line in handle if line.endswith("\n")]


def apply_file(csv_path: Path, before_ms: int | None = None) -> Applied | None:
    """Apply the file's revisions (those of rows starting before `before_ms`, if given) under
    its lock; None when it has none."""
    revisions = [rev for rev in read(csv_path) if before_ms is None or rev.old.start_ms < before_ms]
    if not revisions:
        return None
    with csv_path.open("ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        result = apply_revisions(_rows(csv_path), revisions)
        if result.applied:
            write_atomic(csv_path, (HEADER_LINE + "".join(map(format_row, result.rows))).encode())
    journal = inexact_io.read_journal(csv_path)
    repaired = {rev.old.start_ms for rev in revisions} - {
        rev.old.start_ms for rev in result.conflicts
    }
    kept = {start: reason for start, reason in journal.items() if start not in repaired}
    if kept != journal:
        inexact_io.rewrite(csv_path, kept)
    return result
