"""The trade tape's writer (group commit) and retention.

- One writer per data_dir: `TapeWriter` holds the lock file `{data_dir}/tape.lock`.
- `commit()` does one O_APPEND write of whole lines per segment, then fdatasyncs them (and the
  folder of a new file): durable when it returns; a crash leaves at most one torn last line,
  which opening the segment cuts back (`tape_torn_tail_cut`) before appending.
- A failed commit truncates every segment it touched back to its committed size and keeps
  the batch buffered, so a retry writes it exactly once.
- A new segment gets `HEADER`; an existing one keeps its header (tape/format.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hlstream.common.durable import fsync_dir, hold_lock, last_line_end
from hlstream.common.errors import ConfigError, ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import Trade
from hlstream.common.tape.format import (
    DAY_MS,
    HEADER_BYTES,
    TAPE_DIR,
    Record,
    TapePosition,
    format_record,
    format_trades,
    name_day,
    record_day,
    segment_day,
    segment_path,
    shift_day,
    split_by_day,
)
from hlstream.common.tape.readers_io import (
    check_header,
    decode_line,
    lines_backward,
    segment_days,
)

LOCK_NAME = "tape.lock"
_fdatasync = getattr(os, "fdatasync", os.fsync)
SegmentKey = tuple[str, str]  # (coin, day)
# (day, its trades, start, end): the bytes [start, end) of the day's segment they occupy
# once committed; a plain tuple, built once per coin per frame.
Taped = tuple[str, Sequence[Trade], int, int]


def _make_dir(path: Path, durable: bool) -> None:
    """mkdir -p, fsyncing the parent of every folder it creates."""
    if path.is_dir():
        return
    _make_dir(path.parent, durable)
    try:
        path.mkdir()
    except FileExistsError:
        return
    if durable:
        fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # a short write (signal, disk nearly full): finish it
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


@dataclass(slots=True)
class _Segment:
    """An open segment: `size`, its committed length, is always the end of a whole line."""

    coin: str
    day: str
    path: Path
    fd: int
    size: int
    new_file: bool
    users: bool = True


class TapeWriter:
    """Appends records to their day's segment; `commit()` makes everything appended durable.
    Not thread-safe: ingest publishes a batch only after the commit that holds it returned."""

    def __init__(self, data_dir: Path | str, log: EventLog, *, fsync: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.log = log
        self.fsync = fsync
        self._buffers: dict[SegmentKey, list[str]] = {}
        self._buffered_bytes: dict[SegmentKey, int] = {}
        self._open: dict[SegmentKey, _Segment] = {}
        self._unsynced: set[SegmentKey] = set()  # written, not yet fdatasynced
        self._unsynced_dirs: set[Path] = set()
        self._day = (-1, "")  # (ts_ms // DAY_MS, its segment day) of the last batch
        _make_dir(self.data_dir / TAPE_DIR, fsync)
        refusal = f"another process is writing the tape in {self.data_dir}"
        self._lock_fd = hold_lock(self.data_dir / LOCK_NAME, f"pid {os.getpid()}", refusal)

    def append(self, records: Iterable[Record]) -> dict[SegmentKey, tuple[int, int]]:
        """Buffer records in their day's segment for the next commit, all or none (ProtocolError
        if one cannot be a valid line); per segment, the bytes they will occupy once committed."""
        by_key: dict[SegmentKey, list[str]] = {}
        for record in records:
            for piece in split_by_day(record):
                key = (piece.coin, record_day(piece))
                line = format_record(piece, self._segment(key).users)
                by_key.setdefault(key, []).append(line)
        return {key: self._buffer(key, "".join(lines)) for key, lines in by_key.items()}

    def append_trades(
        self, coin: str, trades: Sequence[Trade], *, checked: bool = False
    ) -> list[Taped]:
        """`append` for one coin's trades (the hot path), per day's segment they fill, in day
        order; all or nothing. `checked`: as `format_trades` takes it."""
        day_index = trades[0].ts_ms // DAY_MS
        if day_index != self._day[0]:  # the day's name, worked out once a day
            self._day = (day_index, segment_day(trades[0].ts_ms))
        day = self._day[1]
        text = format_trades(trades, coin, day, self._segment((coin, day)).users, checked=checked)
        if text is not None:
            return [(day, trades, *self._buffer((coin, day), text))]
        if any(trade.coin != coin for trade in trades):
            raise ProtocolError(f"trades of another coin in a {coin} batch")
        by_day: dict[str, list[Trade]] = {}
        for trade in trades:  # the batch straddles midnight UTC
            by_day.setdefault(segment_day(trade.ts_ms), []).append(trade)
        texts = {
            day: format_trades(group, coin, day, self._segment((coin, day)).users, checked=checked)
            for day, group in sorted(by_day.items())
        }
        return [
            (day, by_day[day], *self._buffer((coin, day), text or ""))
            for day, text in texts.items()
        ]

    def _buffer(self, key: SegmentKey, text: str) -> tuple[int, int]:
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        committed = self._segment(key).size
        start = committed + (0 if committed else len(HEADER_BYTES))
        start += self._buffered_bytes.get(key, 0)
        chunks = self._buffers.get(key)
        if chunks is None:
            self._buffers[key] = [text]
            self._buffered_bytes[key] = size
        else:
            chunks.append(text)
            self._buffered_bytes[key] += size
        return start, start + size

    def commit(self, sync: bool = True) -> list[TapePosition]:
        """Write every buffered line and, with `sync`, fdatasync them; return the new end of
        each segment written, sorted. Without `sync` the lines survive the writer's crash but
        not the machine's until `take_unsynced()`'s are synced."""
        if not self._buffers:
            return []
        batch = [(self._segment(key), chunks) for key, chunks in self._buffers.items()]
        segments = [segment for segment, _ in batch]
        try:
            sizes = [self._write(segment, chunks) for segment, chunks in batch]
            if self.fsync and sync:
                new_dirs = {segment.path.parent for segment in segments if segment.new_file}
                _sync([segment.fd for segment in segments], new_dirs)
            elif self.fsync:
                self._unsynced.update((segment.coin, segment.day) for segment in segments)
                self._unsynced_dirs.update(s.path.parent for s in segments if s.new_file)
        except OSError:
            self._roll_back(segments)
            raise
        opened_new = any(segment.new_file for segment in segments)
        for segment, size in zip(segments, sizes, strict=True):
            segment.size = size
            segment.new_file = False
        self._buffers = {}
        self._buffered_bytes = {}
        if opened_new:
            self._close_stale()
        return sorted(TapePosition(s.coin, s.day, s.size) for s in segments)

    def take_unsynced(self) -> tuple[list[int], list[Path]]:
        """Duplicates of the descriptors written since the last call, and new folders, for the
        caller to sync outside any lock it holds (`sync_taken`)."""
        fds = [os.dup(self._open[key].fd) for key in self._unsynced if key in self._open]
        dirs = list(self._unsynced_dirs)
        self._unsynced.clear()
        self._unsynced_dirs.clear()
        return fds, dirs

    def recover(self, coins: Iterable[str]) -> list[TapePosition]:
        """Open (and so repair) the two newest segments of each coin; return their ends."""
        positions = []
        for coin in coins:
            for day in segment_days(self.data_dir, coin, csv_only=True)[-2:]:
                positions.append(TapePosition(coin, day, self._segment((coin, day)).size))
        return sorted(positions)

    def close(self) -> None:
        """Commit what is pending, then close every segment and release the lock."""
        try:
            self.commit()
        finally:
            for segment in self._open.values():
                os.close(segment.fd)
            self._open.clear()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def _write(self, segment: _Segment, chunks: list[str]) -> int:
        data = (chunks[0] if len(chunks) == 1 else "".join(chunks)).encode("utf-8")
        if segment.size == 0:
            data = HEADER_BYTES + data
        _write_all(segment.fd, data)
        return segment.size + len(data)

    def _roll_back(self, segments: list[_Segment]) -> None:
        for segment in segments:
            try:
                os.ftruncate(segment.fd, segment.size)
            except OSError as exc:
                self.log.error("tape_rollback_failed", path=str(segment.path), error=str(exc))

    def _segment(self, key: SegmentKey) -> _Segment:
        segment = self._open.get(key)
        if segment is None:
            segment = self._open[key] = self._open_segment(*key)
        return segment

    def _open_segment(self, coin: str, day: str) -> _Segment:
        path = segment_path(self.data_dir, coin, day)
        _make_dir(path.parent, self.fsync)
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(path, flags)
        else:
            return _Segment(coin, day, path, fd, 0, new_file=True)
        try:
            size, users = self._repair(fd, path, coin)
        except BaseException:
            os.close(fd)
            raise
        return _Segment(coin, day, path, fd, size, new_file=False, users=users)

    def _repair(self, fd: int, path: Path, coin: str) -> tuple[int, bool]:
        """Cut a torn tail, check the header and last line: (whole-line length, users columns)."""
        size = os.fstat(fd).st_size
        keep = last_line_end(fd, size)
        if keep < size:
            os.ftruncate(fd, keep)
            if self.fsync:
                os.fsync(fd)
            self.log.warning("tape_torn_tail_cut", path=str(path), dropped_bytes=size - keep)
        users = True
        if keep:
            users = check_header(fd, path)
            raw, offset = next(lines_backward(fd, keep))
            if offset:  # garbage ending in `\n` is not a torn tail
                decode_line(raw, path, offset, coin, users)
        return keep, users

    def _close_stale(self) -> None:
        """Close segments older than the day before their coin's newest open segment."""
        newest = dict(sorted(self._open))  # coin -> its newest open day
        for key in [k for k in self._open if k[1] < shift_day(newest[k[0]], -1)]:
            if key not in self._buffers:
                os.close(self._open.pop(key).fd)


def _sync(fds: Iterable[int], dirs: Iterable[Path]) -> None:
    for fd in fds:
        _fdatasync(fd)
    for folder in dirs:
        fsync_dir(folder)


def sync_taken(fds: list[int], dirs: list[Path]) -> None:
    """fdatasync and close what `TapeWriter.take_unsynced` handed out; fsync new folders."""
    try:
        _sync(fds, dirs)
    finally:
        for fd in fds:
            os.close(fd)


def prune(data_dir: Path | str, keep_days: int, today: str) -> list[Path]:
    """Delete (and return) segments, CSV or compacted, older than the last `keep_days` days,
    today included; at least 2: yesterday's segment takes late trades after midnight."""
    if keep_days < 2:
        raise ConfigError(f"tape keep_days={keep_days} must be at least 2")
    oldest_kept = shift_day(today, 1 - keep_days)
    paths = sorted((Path(data_dir) / TAPE_DIR).glob("*/*"))
    removed = [path for path in paths if (day := name_day(path.name)) and day < oldest_kept]
    for path in removed:
        path.unlink()
    return removed
