"""`hlstream verify [FILE...]`: hlstream/verify.py over CSV files, one line per finding. A file
is read up to its size under a brief `LOCK_SH` (the writer appends whole lines under
`LOCK_EX`), so a live file never shows a half-written append and the writer never waits.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from hlstream.common import inexact_io, revisions_io
from hlstream.common.errors import IntegrityError
from hlstream.common.inexact_io import SUFFIX
from hlstream.common.revisions import Revision
from hlstream.common.timebucket import parse_interval
from hlstream.verify import (
    FILE_SUFFIX,
    NOT_DEFECTS,
    REVISED,
    Finding,
    check_lines,
    interval_from_filename,
    plural,
)


def snapshot_lines(path: Path) -> Iterator[bytes]:
    """The file's lines (each with its `\\n` but a torn last) up to its size under a brief
    `LOCK_SH`: no append is half-written at that size."""
    with path.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        left = os.fstat(handle.fileno()).st_size
        fcntl.flock(handle, fcntl.LOCK_UN)
        while left > 0 and (line := handle.readline(left)):
            left -= len(line)
            yield line


def verify_file(path: Path, interval: str | None = None) -> tuple[list[Finding], int]:
    """Findings and parsed row count for one file (an unreadable file is one finding)."""
    findings: list[Finding] = []
    parsed = interval_from_filename(path.name)
    interval_ms = parse_interval(interval) if interval else parsed[1] if parsed else None
    if not interval and parsed is None:
        message = (
            f"no interval in the name (expected *_{{interval}}{FILE_SUFFIX}); hole checks skipped"
        )
        findings.append(Finding(0, "name", message))
    journal = inexact_io.read_journal(path)
    revisions: list[Revision] = []
    try:
        revisions = revisions_io.read(path)
    except (OSError, IntegrityError) as exc:
        name = revisions_io.revisions_path(path).name
        findings.append(Finding(0, "revisions", f"{name} cannot be read: {exc}"))
    try:
        lines = snapshot_lines(path)
        found, rows = check_lines(lines, interval_ms, journal, path.name + SUFFIX, revisions)
    except OSError as exc:  # open() names the file, a failed read does not
        return [Finding(0, "io", f"cannot {'open' if exc.filename else 'read'}: {exc.strerror}")], 0
    return findings + found, rows


def run_verify(
    paths: list[Path],
    interval: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print one line per finding (`path:line: kind: message`); 1 if any defect, else 0
    (a pending revision is listed and counted, not a defect)."""
    out, err = out or sys.stdout, err or sys.stderr
    defects = revised = total_rows = 0
    for path in paths:
        findings, rows = verify_file(path, interval)
        total_rows += rows
        for finding in findings:
            defects += finding.kind not in NOT_DEFECTS
            revised += finding.kind == REVISED
            out.write(f"{path}:{finding.line}: {finding.kind}: {finding.message}\n")
    out.flush()
    verdict = "ok" if not defects else plural(defects, "defect")
    if revised:
        verdict += f", {plural(revised, 'revision')} pending (hlstream repair applies them)"
    counted = f"{plural(len(paths), 'file')}, {plural(total_rows, 'row')}"
    err.write(f"hlstream verify: {counted}: {verdict}\n")
    return 1 if defects else 0
