"""Reading and appending `{file}.revisions` (format: common/revisions.py).

An append is one write + fsync (the header goes into a new file), so a crash leaves at most a
torn last line, which readers ignore.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hlstream.common.revisions import HEADER, SUFFIX, Revision, format_revision, parse_revisions


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
