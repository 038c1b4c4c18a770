"""The trade tape on disk: a group-committing writer, readers, tail scans and pruning.

Format and routing live in common/tape/format.py; this module owns the files. Invariants:
- One writer per data_dir: `TapeWriter` holds an exclusive flock on `{data_dir}/tape.lock`
  (released by the kernel if the process dies, so a stale lock never blocks a restart).
- Segments are opened O_APPEND; `commit()` does one write of whole lines per segment, then
  fdatasyncs every segment it wrote (and the directory after creating a file), so a commit
  is durable when it returns and a crash leaves at most one unfinished line at a segment's end.
- Opening an existing segment cuts such a torn tail back to the last `\\n` (logged as
  `tape_torn_tail_cut`) before anything is appended after it.
- A failed commit truncates every segment it touched back to its last committed size and
  keeps the batch buffered, so a retry writes it exactly once.
- Readers (common/tape/readers_io.py) stop at the last whole line: a reader racing the
  writer, or a crash, never yields half a record (an unfinished line is reported as
  `tape_torn_line_ignored`). A malformed whole line is corruption and raises IntegrityError
  with its path and byte offset.
- `TapePosition.offset` is always the end of a whole line; `read_since` resumes from it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hlstream.common.durable import fsync_dir, hold_lock, last_line_end
from hlstream.common.errors import ConfigError, IntegrityError, ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import Trade
from hlstream.common.tape.format import (
    HEADER_BYTES,
    TAPE_DIR,
    Record,
    TapePosition,
    check_day,
    coin_dir,
    format_record,
    format_trades,
    is_segment_name,
    parse_record,
    record_day,
    segment_day,
    segment_path,
    shift_day,
    split_by_day,
)

LOCK_NAME = "tape.lock"
_CHUNK = 1 << 16
TORN_LOG_EVERY_S = 60.0
LATE_SCAN_MS = 60_000  # tape lines are near time order: scan back this far past a hit
_fdatasync = getattr(os, "fdatasync", os.fsync)


# --- small file helpers -----------------------------------------------------------------


def _make_dir(path: Path, durable: bool) -> None:
    """mkdir -p, fsyncing the parent of every directory it creates."""
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


def lines_backward(fd: int, end: int) -> Iterator[tuple[bytes, int]]:
    """Whole lines (with `\\n`) before `end` (a line boundary), newest first, with offsets."""
    stop, chunk = end, _CHUNK
    while stop > 0:
        start = max(0, stop - chunk)
        block = os.pread(fd, stop - start, start)
        high = len(block)
        while (newline := block.rfind(b"\n", 0, high - 1)) >= 0:
            yield block[newline + 1 : high], start + newline + 1
            high = newline + 1
        if start == 0:
            yield block[:high], 0
            return
        chunk = chunk * 2 if high == len(block) else _CHUNK  # one line longer than a chunk
        stop = start + high


def check_header(fd: int, path: Path) -> None:
    if os.pread(fd, len(HEADER_BYTES), 0) != HEADER_BYTES:
        raise IntegrityError(f"{path} does not start with the tape header; refusing to use it")


def decode_line(raw: bytes, path: Path, offset: int, coin: str) -> Record:
    """Parse one whole line of the segment of `coin`; IntegrityError if it is not a record."""
    try:
        record = parse_record(raw.decode("utf-8"))
    except (UnicodeDecodeError, ProtocolError) as exc:
        raise IntegrityError(f"{path} byte {offset}: corrupt tape record: {exc}") from None
    if record.coin != coin:
        raise IntegrityError(f"{path} byte {offset}: record of {record.coin!r} in {coin!r} tape")
    return record


def segment_days(data_dir: Path | str, coin: str) -> list[str]:
    """Days that have a segment for `coin`, oldest first."""
    folder = coin_dir(data_dir, coin)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(name.removesuffix(".csv") for name in names if is_segment_name(name))


# --- writer -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    """An open segment: `size` is its committed length, always the end of a whole line."""

    coin: str
    day: str
    path: Path
    fd: int
    size: int
    new_file: bool


class TapeWriter:
    """Appends records to their day's segment; `commit()` makes everything appended durable.

    One per data_dir (flock) and not thread-safe: the ingest shell owns it and calls
    `append` then `maybe_commit(clock.monotonic())` from its loop, publishing a batch only
    after the commit that holds it has returned.
    """

    def __init__(
        self, data_dir: Path | str, log: EventLog, *, commit_ms: int = 50, fsync: bool = True
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log = log
        self.commit_s = commit_ms / 1000
        self.fsync = fsync
        self._buffers: dict[tuple[str, str], list[str]] = {}
        self._buffered_bytes: dict[tuple[str, str], int] = {}
        self._open: dict[tuple[str, str], _Segment] = {}
        self._pending = 0
        self._last_commit_s: float | None = None
        self._unsynced: set[tuple[str, str]] = set()  # written, not yet fdatasynced
        self._unsynced_dirs: set[Path] = set()
        _make_dir(self.data_dir / TAPE_DIR, fsync)
        refusal = f"another process is writing the tape in {self.data_dir}"
        self._lock_fd = hold_lock(self.data_dir / LOCK_NAME, f"pid {os.getpid()}", refusal)

    @property
    def pending(self) -> int:
        """Records appended but not yet committed."""
        return self._pending

    def append(self, records: Iterable[Record]) -> dict[tuple[str, str], tuple[int, int]]:
        """Buffer records in their day's segment for the next commit; all or none of them.

        Returns, per (coin, day) segment touched, the byte span `(start, end)` these records
        will occupy once committed (the segment is opened, and so repaired, now). Ingest puts
        the span on the bus so the aggregator can tell what it has already applied.
        ProtocolError (nothing buffered) if any record cannot be written as one valid line.
        """
        by_key: dict[tuple[str, str], list[str]] = {}
        for record in records:
            for piece in (record,) if isinstance(record, Trade) else split_by_day(record):
                key = (piece.coin, record_day(piece))
                by_key.setdefault(key, []).append(format_record(piece))
        return {key: self._buffer(key, "".join(lines), len(lines)) for key, lines in by_key.items()}

    def append_trades(
        self, coin: str, trades: Sequence[Trade]
    ) -> list[tuple[str, Sequence[Trade], int, int]]:
        """`append` for one coin's trades (the hot path): (day, its trades, start, end) per
        segment they fill, in day order; nearly always one. All or nothing: ProtocolError
        (nothing buffered) if a trade is not `coin`'s or cannot be written as one valid line."""
        day = segment_day(trades[0].ts_ms)
        text = format_trades(trades, coin, day)
        if text is not None:
            return [(day, trades, *self._buffer((coin, day), text, len(trades)))]
        if any(trade.coin != coin for trade in trades):
            raise ProtocolError(f"trades of another coin in a {coin} batch")
        by_day: dict[str, list[Trade]] = {}
        for trade in trades:  # the batch straddles midnight UTC
            by_day.setdefault(segment_day(trade.ts_ms), []).append(trade)
        texts = {day: format_trades(group, coin, day) for day, group in sorted(by_day.items())}
        return [
            (day, by_day[day], *self._buffer((coin, day), text or "", len(by_day[day])))
            for day, text in texts.items()
        ]

    def _buffer(self, key: tuple[str, str], text: str, count: int) -> tuple[int, int]:
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        start = self._projected_end(key)
        chunks = self._buffers.get(key)
        if chunks is None:
            self._buffers[key] = [text]
            self._buffered_bytes[key] = size
        else:
            chunks.append(text)
            self._buffered_bytes[key] += size
        self._pending += count
        return start, start + size

    def _projected_end(self, key: tuple[str, str]) -> int:
        """Where the segment will end after the next commit (header included if new)."""
        size = self._segment(key).size
        buffered = self._buffered_bytes.get(key, 0)
        header = len(HEADER_BYTES) if size == 0 else 0
        return size + header + buffered

    def maybe_commit(self, now_monotonic: float) -> list[TapePosition]:
        """Commit when records are pending and `commit_ms` has passed since the last commit."""
        if not self._pending:
            return []
        last = self._last_commit_s
        if last is not None and now_monotonic - last < self.commit_s:
            return []
        self._last_commit_s = now_monotonic
        return self.commit()

    def commit(self, sync: bool = True) -> list[TapePosition]:
        """Write every buffered line (one write per segment) and, with `sync`, fdatasync them;
        return the new end of each segment written.

        Without `sync` the lines are in the page cache when this returns: every process sees
        them and they survive the writer's crash, but not the machine's; `take_unsynced()`
        hands the segments to a thread that syncs them off the hot path.
        """
        if not self._buffers:
            return []
        batch = [(self._segment(key), chunks) for key, chunks in self._buffers.items()]
        sizes = []
        try:
            for segment, chunks in batch:
                sizes.append(self._write(segment, chunks))
            if self.fsync and sync:
                self._sync([segment for segment, _ in batch])
            elif self.fsync:
                for segment, _ in batch:
                    self._unsynced.add((segment.coin, segment.day))
                    if segment.new_file:
                        self._unsynced_dirs.add(segment.path.parent)
        except OSError:
            self._roll_back([segment for segment, _ in batch])
            raise
        positions = []
        opened_new = False
        for (segment, _), size in zip(batch, sizes, strict=True):
            segment.size = size
            opened_new = opened_new or segment.new_file
            segment.new_file = False
            positions.append(TapePosition(segment.coin, segment.day, size))
        self._buffers = {}
        self._buffered_bytes = {}
        self._pending = 0
        if opened_new:
            self._close_stale()
        if len(positions) > 1:
            positions.sort()
        return positions

    def take_unsynced(self) -> tuple[list[int], list[Path]]:
        """Duplicates of the descriptors written since the last call, and new folders: the
        caller fdatasyncs and closes them (`sync_taken`), outside any lock it holds."""
        fds = [os.dup(self._open[key].fd) for key in self._unsynced if key in self._open]
        dirs = list(self._unsynced_dirs)
        self._unsynced.clear()
        self._unsynced_dirs.clear()
        return fds, dirs

    def recover(self, coins: Iterable[str]) -> list[TapePosition]:
        """Open (and so repair) the two newest segments of each coin; return their ends."""
        positions = []
        for coin in coins:
            for day in segment_days(self.data_dir, coin)[-2:]:
                segment = self._segment((coin, day))
                positions.append(TapePosition(coin, day, segment.size))
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

    def __enter__(self) -> TapeWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _write(self, segment: _Segment, chunks: list[str]) -> int:
        data = (chunks[0] if len(chunks) == 1 else "".join(chunks)).encode("utf-8")
        if segment.size == 0:
            data = HEADER_BYTES + data
        _write_all(segment.fd, data)
        return segment.size + len(data)

    def _sync(self, segments: list[_Segment]) -> None:
        for segment in segments:
            _fdatasync(segment.fd)
        for folder in {segment.path.parent for segment in segments if segment.new_file}:
            fsync_dir(folder)

    def _roll_back(self, segments: list[_Segment]) -> None:
        for segment in segments:
            try:
                os.ftruncate(segment.fd, segment.size)
            except OSError as exc:
                self.log.error("tape_rollback_failed", path=str(segment.path), error=str(exc))

    def _segment(self, key: tuple[str, str]) -> _Segment:
        segment = self._open.get(key)
        if segment is None:
            segment = self._open_segment(*key)
            self._open[key] = segment
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
            size = self._repair(fd, path, coin)
        except BaseException:
            os.close(fd)
            raise
        return _Segment(coin, day, path, fd, size, new_file=False)

    def _repair(self, fd: int, path: Path, coin: str) -> int:
        """Cut a torn tail, check the header and last line; return the whole-line length."""
        size = os.fstat(fd).st_size
        keep = last_line_end(fd, size)
        if keep < size:
            os.ftruncate(fd, keep)
            if self.fsync:
                os.fsync(fd)
            self.log.warning("tape_torn_tail_cut", path=str(path), dropped_bytes=size - keep)
        if keep:
            check_header(fd, path)
            raw, offset = next(lines_backward(fd, keep))
            if offset:
                decode_line(raw, path, offset, coin)  # garbage ending in `\n` is not a torn tail
        return keep

    def _close_stale(self) -> None:
        """Close segments older than the day before their coin's newest open segment."""
        newest: dict[str, str] = {}
        for coin, day in self._open:
            newest[coin] = max(newest.get(coin, day), day)
        for key in [k for k in self._open if k[1] < shift_day(newest[k[0]], -1)]:
            if key not in self._buffers:
                os.close(self._open.pop(key).fd)


def sync_taken(fds: list[int], dirs: list[Path]) -> None:
    """fdatasync and close what `TapeWriter.take_unsynced` handed out; fsync new folders."""
    try:
        for fd in fds:
            _fdatasync(fd)
        for folder in dirs:
            fsync_dir(folder)
    finally:
        for fd in fds:
            os.close(fd)


# --- retention --------------------------------------------------------------------------


def prune(data_dir: Path | str, keep_days: int, today: str) -> list[Path]:
    """Delete segments of every coin older than the last `keep_days` days (today included).

    `keep_days` must be at least 2: yesterday's segment still takes late trades after
    midnight, and today's is never touched. Returns the deleted paths.
    """
    if keep_days < 2:
        raise ConfigError(f"tape keep_days={keep_days} must be at least 2")
    check_day(today)
    oldest_kept = shift_day(today, 1 - keep_days)
    removed: list[Path] = []
    root = Path(data_dir) / TAPE_DIR
    if not root.is_dir():
        return removed
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for name in sorted(os.listdir(folder)):
            if is_segment_name(name) and name.removesuffix(".csv") < oldest_kept:
                (folder / name).unlink()
                removed.append(folder / name)
    return removed
