"""Reading and appending `{file}.revisions` (format: common/revisions.py), and applying them
to their CSV file (`hlstream repair`, and the writer at the day rollover).

An append is one write + fsync (the header goes into a new file), so a crash leaves at most a
torn last line, which readers ignore. Applying replaces the CSV file atomically (temp, fsync,
rename) under its `flock(LOCK_EX)`, as the writer appends, and only when a revision changes a
row, so applying again is a no-op; a writer's or backfill's open descriptor follows the new
file at its next append (csvfile_io.py). A repaired row is the venue's candle, so its
`.inexact` entry goes.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from hlstream.common import inexact_io
from hlstream.common.csvrow import HEADER_LINE, Row, parse_row, row_line
from hlstream.common.durable import write_atomic
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
    data = "".join(format_revision(revision) for revision in revisions).encode()
    if not data:
        return
    fd = os.open(revisions_path(csv_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size == 0:
            data = (HEADER + "\n").encode() + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


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
            write_atomic(csv_path, (HEADER_LINE + "".join(map(row_line, result.rows))).encode())
    journal = inexact_io.read_journal(csv_path)
    repaired = {rev.old.start_ms for rev in revisions} - {
        rev.old.start_ms for rev in result.conflicts
    }
    kept = {start: reason for start, reason in journal.items() if start not in repaired}
    if kept != journal:
        inexact_io.rewrite(csv_path, kept)
    return result
