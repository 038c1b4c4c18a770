"""Rows that are not exact, recorded beside their CSV file so they are never silent.

`{csv file}.inexact` (e.g. `BTC_5s_data.csv.inexact`) is a CSV with the header
`Datetime,Reason` and one line per row the writer wrote without being able to vouch for it:

    partial             the bar was not watched whole (a feed gap the tape could not cover,
                        or an outage longer than the aggregator holds windows for) and the
                        exchange has no candle to replace it (seconds intervals)
    carried_over_hole   a hole in the file was filled by carrying the last close forward
                        without trade data for those windows (seconds intervals)
    gap_after_close     the aggregator had emitted the window as complete before a feed gap
                        over it became known (the venue's replay on reconnect fell short);
                        removed when the venue audit finds a 1m+ row equal to its candle
    venue_mismatch      the venue's audit found the row's minute differs from its 1m candle
                        (seconds intervals: services/writer/auditor_io.py)

The writer appends (and fsyncs) an entry before the row itself, so a crash can leave an entry
for a row never written, never a row without its entry. A file with no inexact rows has no
journal.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

from hlstream.common.durable import write_atomic
from hlstream.common.timebucket import format_window, parse_window

SUFFIX = ".inexact"
HEADER = b"Datetime,Reason\n"
_LOCK = threading.Lock()  # one process's appends and discards: a discard loses no append


class Reason(StrEnum):
    PARTIAL = "partial"
    CARRIED_OVER_HOLE = "carried_over_hole"
    GAP_AFTER_CLOSE = "gap_after_close"
    VENUE_MISMATCH = "venue_mismatch"


def journal_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + SUFFIX)


def _lines(entries: Iterable[tuple[int, str]]) -> bytes:
    return "".join(f"{format_window(start)},{reason}\n" for start, reason in entries).encode()


def record(csv_path: Path, entries: list[tuple[int, Reason]]) -> None:
    """Append entries durably (one write + fsync); the header goes into a new journal."""
    if not entries:
        return
    with _LOCK:
        _append(csv_path, entries)


def _append(csv_path: Path, entries: list[tuple[int, Reason]]) -> None:
    fd = os.open(journal_path(csv_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC)
    try:
        data = _lines(entries)
        if os.fstat(fd).st_size == 0:
            data = HEADER + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(csv_path: Path) -> dict[int, str]:
    """{window start: reason} (the latest entry per window); {} without a journal."""
    try:
        data = journal_path(csv_path).read_bytes()
    except FileNotFoundError:
        return {}
    out: dict[int, str] = {}
    for line in data.decode("utf-8", "replace").splitlines(keepends=True)[1:]:
        stamp, _, reason = line.rstrip("\n").partition(",")
        if not line.endswith("\n") or not reason:
            continue  # a torn last line (crash mid-append)
        try:
            out[parse_window(stamp)] = reason
        except ValueError:
            continue
    return out


def count(csv_path: Path) -> int:
    return len(read_journal(csv_path))


def rewrite(csv_path: Path, entries: dict[int, str]) -> None:
    """Replace the journal atomically with `entries` (removed when empty)."""
    path = journal_path(csv_path)
    if not entries:
        path.unlink(missing_ok=True)
        return
    write_atomic(path, HEADER + _lines(sorted(entries.items())))


def discard(csv_path: Path, starts: Iterable[int], reason: Reason) -> bool:
    """Remove the entries of `starts` whose reason is `reason` (the venue vouched for those
    rows), atomically, serialised with this process's appends; True when any went."""
    with _LOCK:
        journal = read_journal(csv_path)
        kept = dict(journal)
        for start in starts:
            if kept.get(start) == reason:
                del kept[start]
        if kept == journal:
            return False
        rewrite(csv_path, kept)
        return True
