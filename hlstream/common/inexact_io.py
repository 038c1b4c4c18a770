"""`{csv file}.inexact` (`Datetime,Reason`): the rows the writer could not vouch for, so they
are never silent. An entry is appended (and fsynced) before its row, so a crash can leave an
entry for a row never written, never a row without its entry."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

from hlstream.common.durable import append_durably, write_atomic
from hlstream.common.timebucket import format_window, parse_window

SUFFIX = ".inexact"
HEADER = b"Datetime,Reason\n"
_LOCK = threading.Lock()  # one process's appends and discards: a discard loses no append


class Reason(StrEnum):
    # not watched whole (a gap the tape could not cover) and no venue candle to replace it
    PARTIAL = "partial"
    # a hole filled by carrying the last close forward without trade data (seconds intervals)
    CARRIED_OVER_HOLE = "carried_over_hole"
    # emitted as complete before a feed gap over it became known; removed when the venue
    # audit finds a 1m+ row equal to its candle
    GAP_AFTER_CLOSE = "gap_after_close"
    # the venue audit found the row's minute differs from its 1m candle (seconds intervals)
    VENUE_MISMATCH = "venue_mismatch"


def journal_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + SUFFIX)


def _lines(entries: Iterable[tuple[int, str]]) -> bytes:
    return "".join(f"{format_window(start)},{reason}\n" for start, reason in entries).encode()


def record(csv_path: Path, entries: list[tuple[int, Reason]]) -> None:
    """Append entries durably (one write + fsync); the header goes into a new journal."""
    if entries:
        with _LOCK:
            append_durably(journal_path(csv_path), _lines(entries), HEADER)


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
        with contextlib.suppress(ValueError):  # not a window start: skipped
            out[parse_window(stamp)] = reason
    return out


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
    gone = set(starts)
    with _LOCK:
        journal = read_journal(csv_path)
        kept = {start: was for start, was in journal.items() if start not in gone or was != reason}
        if kept != journal:
            rewrite(csv_path, kept)
        return kept != journal
