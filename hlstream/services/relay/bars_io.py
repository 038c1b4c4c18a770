"""The relay's bar files: what is new in each CSV file, its `.inexact` journal and its
`.revisions` since a sink's saved progress (bars.BarPlan decides what to send).

Reading order: rows, then the journal, then the revisions. The writer journals a row before
writing it and the audit revises only written rows, so every row read has its journal entry,
if any, and every revision its row, in what is read after it.

A pin is a hard link in `run_dir/relay-pins/` to the inode a bar file names. The writer only
appends to that inode, so the pin reads as the file; when rebuild or repair replaces the file
(rename over it), the pin still holds the rows the relay sent, and the new file is compared
with them: only windows that changed go again. Pins of inodes that neither the saved progress
nor a live file uses are removed after a save. Where no link can be made (run_dir on another
filesystem), a replaced file is re-sent whole, one generation higher.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from hlstream.common import inexact_io, revisions_io
from hlstream.common.config import Settings
from hlstream.common.csvrow import Row
from hlstream.common.errors import IntegrityError
from hlstream.common.filenames import csv_filename
from hlstream.common.revisions import HEADER, Revision, parse_revisions
from hlstream.common.timebucket import parse_interval, parse_window
from hlstream.services.relay.bars import BarPlan, parse_bar_lines
from hlstream.services.relay.core import FileProgress, JsBar, RelayProgress
from hlstream.services.relay.tradecount_io import tape_counts

PINS_DIR = "relay-pins"

Send = Callable[[list[JsBar]], Awaitable[None]]


def _pin_name(name: str, inode: int) -> str:
    return f"{name}@{inode}"


def pin(path: Path, pins: Path) -> tuple[Path, int] | None:
    """A path to read `path`'s current inode through (its pin, or `path` itself when no link
    can be made), and that inode; None when `path` does not exist."""
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return None
    pinned = pins / _pin_name(path.name, inode)
    if pinned.exists():
        return pinned, inode
    temp = pins / f"{path.name}.pin-tmp"
    try:
        pins.mkdir(mode=0o700, exist_ok=True)
        temp.unlink(missing_ok=True)
        os.link(path, temp)
        inode = temp.stat().st_ino  # the inode linked, whatever `path` names by now
        pinned = pins / _pin_name(path.name, inode)
        os.replace(temp, pinned)
    except FileNotFoundError:
        return None
    except OSError:
        return path, inode
    return pinned, inode


def prune_pins(settings: Settings, progress: RelayProgress) -> None:
    """Remove the pins that neither `progress` (saved) nor a live bar file uses."""
    pins = settings.run_dir / PINS_DIR
    keep = {
        _pin_name(name, state.inode)
        for files in (progress.nats_bars, progress.postgres_bars)
        for name, state in files.items()
    }
    for coin in settings.coins:
        for interval in settings.intervals:
            name = csv_filename(coin, interval)
            with contextlib.suppress(OSError):
                keep.add(_pin_name(name, (settings.data_dir / name).stat().st_ino))
    with contextlib.suppress(FileNotFoundError):
        for entry in pins.iterdir():
            if entry.name not in keep:
                entry.unlink(missing_ok=True)


def _rows_from(path: Path, offset: int, end: int | None = None) -> list[tuple[Row, int]]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read() if end is None else handle.read(max(0, end - offset))
    return [(row, offset + at) for row, at in parse_bar_lines(data)]


def _journal(path: Path, offset: int) -> tuple[list[int], set[int], int]:
    """The windows journaled in `path`'s `.inexact` after byte `offset`, every window it
    journals, and the offset after its last whole line."""
    try:
        data = inexact_io.journal_path(path).read_bytes()
    except FileNotFoundError:
        return [], set(), 0
    new: list[int] = []
    every: set[int] = set()
    end = 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        end += len(raw)
        stamp = raw.split(b",", 1)[0].decode("ascii", "replace")
        if stamp == "Datetime":
            continue
        with contextlib.suppress(ValueError):
            start = parse_window(stamp)
            every.add(start)
            if end > offset:
                new.append(start)
    return new, every, end


def _revisions(path: Path, offset: int) -> tuple[list[Revision], int]:
    """The `.revisions` lines of `path` after byte `offset` (from 0 when the file is now
    shorter), and the offset after the last whole line; a line that does not parse is skipped."""
    try:
        data = revisions_io.revisions_path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    if len(data) < offset:
        offset = 0
    out: list[Revision] = []
    end = offset
    for raw in data[offset:].splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        end += len(raw)
        line = raw.decode("utf-8", "replace")
        if not line.startswith("Datetime,"):
            with contextlib.suppress(IntegrityError):
                out.extend(parse_revisions(f"{HEADER}\n{line}"))
    return out, end


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _old_rows(
    source: Path, pins: Path, name: str, state: FileProgress, inode: int
) -> dict[int, Row] | None:
    """The rows the relay sent from a replaced file; None when they cannot be read."""
    if inode != state.inode:
        source = pins / _pin_name(name, state.inode)
    elif _size(source) < state.offset:
        return None  # truncated in place: the bytes sent are gone
    try:
        return {row.start_ms: row for row, _ in _rows_from(source, 0, state.offset)}
    except (FileNotFoundError, NotADirectoryError):
        return None  # no pin of the old inode


def new_bars(
    path: Path, coin: str, interval: str, state: FileProgress, pins: Path
) -> tuple[list[JsBar], FileProgress] | None:
    """The bars to send from `path` since `state`, and the state after sending them."""
    pinned = pin(path, pins)
    if pinned is None:
        return None
    source, inode = pinned
    plan = BarPlan(coin, interval, state)
    whole = functools.cache(lambda: {row.start_ms: row for row, _ in _rows_from(source, 0)})
    replaced = bool(state.inode) and (
        inode != state.inode
        or _size(source) < state.offset
        or _size(inexact_io.journal_path(path)) < state.journal_offset
    )
    if replaced:
        rows = _rows_from(source, 0)
        _, journal, journal_end = _journal(path, 0)
        old = _old_rows(source, pins, path.name, state, inode)
        if old is None:
            plan.resend_all(rows, journal)
        else:
            plan.rewritten(old, rows, journal)
    else:
        rows = _rows_from(source, state.offset)
        flipped, journal, journal_end = _journal(path, state.journal_offset)
        flipped = [start for start in flipped if start <= state.last_start_ms]
        if flipped:
            plan.flips(flipped, whole())
        plan.new_rows(rows, journal)
    revisions, revisions_end = _revisions(path, state.revisions_offset)
    if revisions:
        plan.revisions(revisions, whole())
    plan.state.inode = inode
    plan.state.journal_offset = journal_end
    plan.state.revisions_offset = revisions_end
    return _with_trade_counts(path.parent, coin, interval, plan.bars), plan.state


def _with_trade_counts(data_dir: Path, coin: str, interval: str, bars: list[JsBar]) -> list[JsBar]:
    """The bars with `trades` counted from the tape (None where it does not account for a
    bar's values exactly: tradecount.py)."""
    rows = [Row(b.start_ms, b.open, b.high, b.low, b.close, b.volume) for b in bars]
    counts = tape_counts(data_dir).counts(coin, parse_interval(interval), rows)
    return [msgspec.structs.replace(b, trades=n) for b, n in zip(bars, counts, strict=True)]


async def follow_bars(
    settings: Settings, files: dict[str, FileProgress], send: Send
) -> tuple[int, bool]:
    """Send what is new in every bar file; a file's progress advances only after `send`
    returns. How many bars were sent, and whether a file had been replaced."""
    pins = settings.run_dir / PINS_DIR
    total = 0
    replaced = False
    for coin in settings.coins:
        for interval in settings.intervals:
            name = csv_filename(coin, interval)
            state = files.get(name) or FileProgress()
            found = new_bars(settings.data_dir / name, coin, interval, state, pins)
            if found is None:
                continue
            bars, updated = found
            if bars:
                await send(bars)
                total += len(bars)
            replaced = replaced or (bool(state.inode) and updated.inode != state.inode)
            files[name] = updated
    return total, replaced
