"""The relay's files: its progress (saved only after the sinks acked) and heartbeat in the
run dir, and the new bars of a writer's CSV file and `.inexact` journal since a saved offset."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hlstream.common import inexact_io
from hlstream.common.config import Settings
from hlstream.common.tape.format import segment_path
from hlstream.common.tape.readers_io import segment_days
from hlstream.common.timebucket import parse_interval, parse_window
from hlstream.services.relay.core import (
    BarRow,
    FileProgress,
    JsBar,
    RelayProgress,
    RelayStatus,
    js_bar,
    parse_bar_lines,
)
from hlstream.services.relay.tradecount_io import tape_counts

PROGRESS_FILE = "relay-progress.json"
STATUS_FILE = "relay-status.json"

_PROGRESS = msgspec.json.Decoder(RelayProgress)


def status_path(run_dir: Path) -> Path:
    return run_dir / STATUS_FILE


def read_relay_status(run_dir: Path) -> RelayStatus | None:
    """The relay's last heartbeat, None when missing or unreadable."""
    try:
        return msgspec.json.decode(status_path(run_dir).read_bytes(), type=RelayStatus)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def load_progress(run_dir: Path) -> RelayProgress:
    try:
        return _PROGRESS.decode((run_dir / PROGRESS_FILE).read_bytes())
    except FileNotFoundError:
        return RelayProgress()


def _rows_from(path: Path, offset: int) -> tuple[list[tuple[BarRow, int]], int]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    return [(row, offset + end) for row, end in parse_bar_lines(data)], offset


def _journal_entries(path: Path, offset: int) -> tuple[list[int], int]:
    """Window starts journaled in `path`'s `.inexact` after byte `offset`, and its new end."""
    try:
        data = inexact_io.journal_path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    starts = []
    end = offset
    for raw in data[offset:].splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        end += len(raw)
        stamp = raw.split(b",", 1)[0].decode("ascii", "replace")
        if stamp != "Datetime":
            try:
                starts.append(parse_window(stamp))
            except ValueError:
                continue
    return starts, end


def new_bars(
    path: Path, coin: str, interval: str, state: FileProgress
) -> tuple[list[JsBar], FileProgress] | None:
    """The bars to send from `path` since `state`, and the state after sending them."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    new = msgspec.structs.replace(state, flips=dict(state.flips))
    try:
        journal_size = inexact_io.journal_path(path).stat().st_size
    except FileNotFoundError:
        journal_size = 0
    if state.inode and (
        stat.st_ino != state.inode
        or stat.st_size < state.offset
        or journal_size < state.journal_offset
    ):  # rebuild/repair replaced the file: send every row again, one revision higher
        new.generation += 1
        new.offset = new.journal_offset = 0
        new.last_start_ms = -1
    new.inode = stat.st_ino
    # Rows first, then the journal: the writer journals a row before writing it, so every
    # row read here has its entry, if any, in what is read next.
    rows, _ = _rows_from(path, new.offset)
    starts, journal_end = _journal_entries(path, new.journal_offset)
    inexact = set(inexact_io.read_journal(path))
    sent_up_to = new.last_start_ms
    flipped = {start for start in starts if start <= sent_up_to}
    out: list[tuple[BarRow, bool]] = []  # (row, exact)
    if flipped:
        for row, _ in _rows_from(path, 0)[0]:
            if row.start_ms in flipped and row.start_ms <= sent_up_to:
                new.flips[row.start_ms] = new.flips.get(row.start_ms, 0) + 1
                out.append((row, False))
    for row, end in rows:
        out.append((row, row.start_ms not in inexact))
        new.offset = end
        new.last_start_ms = max(new.last_start_ms, row.start_ms)
    counts = tape_counts(path.parent).counts(coin, parse_interval(interval), [r for r, _ in out])
    bars = [
        js_bar(coin, interval, row, trades, exact, new.revision(row.start_ms))
        for (row, exact), trades in zip(out, counts, strict=True)
    ]
    new.journal_offset = max(journal_end, 0)
    return bars, new


def lag_bytes(settings: Settings, progress: RelayProgress) -> int:
    """Tape bytes of the newest two days per coin not yet acked by NATS."""
    lag = 0
    for coin in settings.coins:
        days = segment_days(settings.data_dir, coin)
        saved = progress.tape.get(coin, {})
        for day in days[-2:]:
            try:
                size = segment_path(settings.data_dir, coin, day).stat().st_size
            except OSError:
                continue
            lag += max(0, size - saved.get(day, 0)) if saved.get(day) else size
    return lag
