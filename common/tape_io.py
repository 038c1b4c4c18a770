"""The trade tape on disk: a group-committing writer, readers, tail scans and pruning.

Format and routing live in common/tape.py; this module owns the files. Invariants:
- One writer per data_dir: `TapeWriter` holds an exclusive flock on `{data_dir}/tape.lock`
  (released by the kernel if the process dies, so a stale lock never blocks a restart).
- Segments are opened O_APPEND; `commit()` does one write of whole lines per segment, then
  fdatasyncs every segment it wrote (and the directory after creating a file), so a commit
  is durable when it returns and a crash leaves at most one unfinished line at a segment's end.
- Opening an existing segment cuts such a torn tail back to the last `\\n` (logged as
  `tape_torn_tail_cut`) before anything is appended after it.
- A failed commit truncates every segment it touched back to its last committed size and
  keeps the batch buffered, so a retry writes it exactly once.
- Readers stop at the last whole line: a reader racing the writer, or a crash, never yields
  half a record (an unfinished line is reported as `tape_torn_line_ignored`). A malformed
  whole line is corruption and raises IntegrityError with its path and byte offset.
- `TapePosition.offset` is always the end of a whole line; `read_since` resumes from it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hlstream.common.errors import ConfigError, IntegrityError, ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import Trade
from hlstream.common.tape import (
    HEADER_BYTES,
    TAPE_DIR,
    Record,
    TapePosition,
    TradeKey,
    check_day,
    coin_dir,
    dedupe_keys_from_tail,
    format_record,
    is_segment_name,
    parse_record,
    record_day,
    segment_day,
    segment_path,
    shift_day,
    split_by_day,
    torn_tail,
)

LOCK_NAME = "tape.lock"
_CHUNK = 1 << 16
_TORN_LOG_EVERY_S = 60.0
LATE_SCAN_MS = 60_000  # tape lines are near time order: scan back this far past a hit
_fdatasync = getattr(os, "fdatasync", os.fsync)


# --- small file helpers -----------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        _fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _whole_lines_end(fd: int, size: int) -> int:
    """Offset just after the last `\\n` in the first `size` bytes of `fd` (0 if none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _CHUNK)
        keep = torn_tail(os.pread(fd, pos - start, start))
        if keep:
            return start + keep
        pos = start
    return 0


def _lines_backward(fd: int, end: int) -> Iterator[tuple[bytes, int]]:
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


def _check_header(fd: int, path: Path) -> None:
    if os.pread(fd, len(HEADER_BYTES), 0) != HEADER_BYTES:
        raise IntegrityError(f"{path} does not start with the tape header; refusing to use it")


def _decode(raw: bytes, path: Path, offset: int, coin: str) -> Record:
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
        _make_dir(self.data_dir / TAPE_DIR, fsync)
        self._lock_fd = self._lock()

    def _lock(self) -> int:
        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            message = f"another process is writing the tape in {self.data_dir}"
            raise IntegrityError(message) from None
        return fd

    @property
    def pending(self) -> int:
        """Records appended but not yet committed."""
        return self._pending

    def committed(self) -> dict[tuple[str, str], int]:
        """A copy of the committed end of every open segment (whole commits only: a reader
        stopping there never splits a published message)."""
        return {key: segment.size for key, segment in self._open.items()}

    def append(self, records: Iterable[Record]) -> dict[tuple[str, str], tuple[int, int]]:
        """Buffer records in their day's segment for the next commit; all or none of them.

        Returns, per (coin, day) segment touched, the byte span `(start, end)` these records
        will occupy once committed (the segment is opened, and so repaired, now). Ingest puts
        the span on the bus so the aggregator can tell what it has already applied.
        ProtocolError (nothing buffered) if any record cannot be written as one valid line.
        """
        formatted = [
            ((piece.coin, record_day(piece)), format_record(piece))
            for record in records
            for piece in ((record,) if isinstance(record, Trade) else split_by_day(record))
        ]
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        buffers = self._buffers
        for key, line in formatted:
            end = self._projected_end(key)
            spans.setdefault(key, (end, end))
            lines = buffers.get(key)
            if lines is None:
                buffers[key] = [line]
                self._buffered_bytes[key] = len(line.encode("utf-8"))
            else:
                lines.append(line)
                self._buffered_bytes[key] += len(line.encode("utf-8"))
            spans[key] = (spans[key][0], self._projected_end(key))
        self._pending += len(formatted)
        return spans

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

    def commit(self) -> list[TapePosition]:
        """Write and fsync every buffered line; return the new end of each segment written."""
        if not self._buffers:
            return []
        batch = [(self._segment(key), lines) for key, lines in self._buffers.items()]
        opened_new = any(segment.new_file for segment, _ in batch)
        try:
            sizes = [self._write(segment, lines) for segment, lines in batch]
            if self.fsync:
                self._sync([segment for segment, _ in batch])
        except OSError:
            self._roll_back([segment for segment, _ in batch])
            raise
        positions = []
        for (segment, _), size in zip(batch, sizes, strict=True):
            segment.size = size
            segment.new_file = False
            positions.append(TapePosition(segment.coin, segment.day, size))
        self._buffers = {}
        self._buffered_bytes = {}
        self._pending = 0
        if opened_new:
            self._close_stale()
        return sorted(positions)

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

    def _write(self, segment: _Segment, lines: list[str]) -> int:
        data = "".join(lines).encode("utf-8")
        if segment.size == 0:
            data = HEADER_BYTES + data
        _write_all(segment.fd, data)
        return segment.size + len(data)

    def _sync(self, segments: list[_Segment]) -> None:
        for segment in segments:
            _fdatasync(segment.fd)
        for folder in {segment.path.parent for segment in segments if segment.new_file}:
            _fsync_dir(folder)

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
        keep = _whole_lines_end(fd, size)
        if keep < size:
            os.ftruncate(fd, keep)
            if self.fsync:
                os.fsync(fd)
            self.log.warning("tape_torn_tail_cut", path=str(path), dropped_bytes=size - keep)
        if keep:
            _check_header(fd, path)
            raw, offset = next(_lines_backward(fd, keep))
            if offset:
                _decode(raw, path, offset, coin)  # garbage ending in `\n` is not a torn tail
        return keep

    def _close_stale(self) -> None:
        """Close segments older than the day before their coin's newest open segment."""
        newest: dict[str, str] = {}
        for coin, day in self._open:
            newest[coin] = max(newest.get(coin, day), day)
        for key in [k for k in self._open if k[1] < shift_day(newest[k[0]], -1)]:
            if key not in self._buffers:
                os.close(self._open.pop(key).fd)


# --- readers ----------------------------------------------------------------------------


def _report_torn(log: EventLog | None, path: Path, nbytes: int) -> None:
    if log is not None:
        log.warning_limited(
            f"tape_torn:{path}",
            _TORN_LOG_EVERY_S,
            "tape_torn_line_ignored",
            path=str(path),
            bytes=nbytes,
        )


def _seek_start(handle: BinaryIO, path: Path, start: int, log: EventLog | None) -> int | None:
    """Check the header and move to `start` (or just past the header); None if no records."""
    first = handle.readline()
    if not first.endswith(b"\n"):
        if first:  # crashed, or being created, while the header was written
            _report_torn(log, path, len(first))
        return None
    if first != HEADER_BYTES:
        raise IntegrityError(f"{path} does not start with the tape header; refusing to read it")
    if start <= len(HEADER_BYTES):
        return len(HEADER_BYTES)
    handle.seek(start - 1)
    if handle.read(1) != b"\n":
        raise IntegrityError(f"{path}: tape position {start} is not the end of a whole line")
    return start


def _read_segment(
    data_dir: Path | str, coin: str, day: str, start: int, log: EventLog | None
) -> Iterator[tuple[Record, int]]:
    """Records of one segment from byte `start`, each with the offset just after it."""
    path = segment_path(data_dir, coin, day)
    with open(path, "rb") as handle:
        offset = _seek_start(handle, path, start, log)
        if offset is None:
            return
        for raw in handle:
            if not raw.endswith(b"\n"):
                _report_torn(log, path, len(raw))
                return
            record = _decode(raw, path, offset, coin)
            offset += len(raw)
            yield record, offset


def _overlaps(record: Record, from_ms: int, to_ms: int | None) -> bool:
    if isinstance(record, Trade):
        return from_ms <= record.ts_ms and (to_ms is None or record.ts_ms < to_ms)
    return record.to_ms >= from_ms and (to_ms is None or record.from_ms < to_ms)


def read_tape(
    data_dir: Path | str,
    coin: str,
    from_ms: int,
    to_ms: int | None = None,
    *,
    log: EventLog | None = None,
) -> Iterator[Record]:
    """Trades of `coin` with from_ms <= ts_ms < to_ms and the gaps overlapping that range.

    Segments are read oldest day first, each in append order.
    """
    if to_ms is not None and to_ms <= from_ms:
        return
    first = segment_day(from_ms)
    last = None if to_ms is None else segment_day(to_ms - 1)
    for day in segment_days(data_dir, coin):
        if day < first or (last is not None and day > last):
            continue
        for record, _ in _read_segment(data_dir, coin, day, 0, log):
            if _overlaps(record, from_ms, to_ms):
                yield record


def read_since(
    data_dir: Path | str,
    coin: str,
    positions: Iterable[TapePosition],
    *,
    log: EventLog | None = None,
) -> Iterator[tuple[Record, TapePosition]]:
    """Every record of `coin` appended after `positions`, each with the position after it.

    Each segment named in `positions` is read from its (latest) offset; every later-day
    segment, and any earlier-day segment not named but newer than the oldest one named, is
    read from its start. With no positions, the whole tape of `coin` is read. Records for a
    day that reach its segment after midnight (late trades) are found as long as that day's
    position is among `positions`: checkpoint the positions of yesterday and today.
    """
    offsets: dict[str, int] = {}
    for position in positions:
        if position.coin != coin:
            raise ValueError(f"tape position of {position.coin!r} passed for {coin!r}")
        offsets[position.day] = max(offsets.get(position.day, 0), position.offset)
    oldest = min(offsets) if offsets else ""
    for day in segment_days(data_dir, coin):
        if day < oldest:
            continue
        for record, end in _read_segment(data_dir, coin, day, offsets.get(day, 0), log):
            yield record, TapePosition(coin, day, end)


def read_from(
    data_dir: Path | str, position: TapePosition, *, log: EventLog | None = None
) -> Iterator[tuple[Record, TapePosition]]:
    """Resume after `position`: the rest of its segment, then every later day's segment."""
    return read_since(data_dir, position.coin, [position], log=log)


# --- tail scans -------------------------------------------------------------------------


def tail_trades(data_dir: Path | str, coin: str, n: int) -> list[Trade]:
    """Up to `n` trades of `coin`, newest segment first and from each segment's end."""
    found: list[Trade] = []
    for day in reversed(segment_days(data_dir, coin)):
        path = segment_path(data_dir, coin, day)
        with open(path, "rb") as handle:
            fd = handle.fileno()
            end = _whole_lines_end(fd, os.fstat(fd).st_size)
            if end:
                _check_header(fd, path)
            for raw, offset in _lines_backward(fd, end):
                if len(found) >= n:
                    return found
                if offset:
                    record = _decode(raw, path, offset, coin)
                    if isinstance(record, Trade):
                        found.append(record)
    return found


def tail_keys(data_dir: Path | str, coin: str, n: int) -> set[TradeKey]:
    """Keys (coin, ts_ms, tid) of the last `n` trades appended for `coin`."""
    return dedupe_keys_from_tail(tail_trades(data_dir, coin, n)) if n > 0 else set()


def newest_ts_ms(data_dir: Path | str, coin: str, *, window: int = 10_000) -> int | None:
    """Exchange time of the newest trade of `coin` among its last `window` on the tape.

    Trades are appended in admission order and a late one is older, never newer, than
    those before it, so the newest lies near the end of the newest segment.
    """
    trades = tail_trades(data_dir, coin, window)
    return max((trade.ts_ms for trade in trades), default=None)


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


def read_span(
    data_dir: Path | str, coin: str, day: str, start: int, end: int, *, log: EventLog | None = None
) -> Iterator[tuple[Record, TapePosition]]:
    """The records in bytes [start, end) of one segment (what a bus message said it holds)."""
    for record, offset in _read_segment(data_dir, coin, day, start, log):
        if offset > end:
            return
        yield record, TapePosition(coin, day, offset)


def tape_coins(data_dir: Path | str) -> list[str]:
    """Every coin with a tape, named as its records name it, sorted."""
    coins = set()
    try:
        folders = os.listdir(Path(data_dir) / TAPE_DIR)
    except FileNotFoundError:
        return []
    for folder in folders:
        days = sorted(
            n for n in os.listdir(Path(data_dir) / TAPE_DIR / folder) if is_segment_name(n)
        )
        for day in days:
            path = Path(data_dir) / TAPE_DIR / folder / day
            with open(path, "rb") as handle:
                handle.readline()
                line = handle.readline()
            if line.endswith(b"\n"):
                coins.add(parse_record(line.decode("utf-8")).coin)
                break
    return sorted(coins)


def first_ts_ms(data_dir: Path | str, coin: str) -> int | None:
    """Time of the first record on the tape of `coin`: where its coverage begins."""
    for day in segment_days(data_dir, coin):
        for record, _ in _read_segment(data_dir, coin, day, 0, None):
            return record.ts_ms if isinstance(record, Trade) else record.from_ms
    return None


def last_trade_before(data_dir: Path | str, coin: str, ts_ms: int) -> Trade | None:
    """The newest trade of `coin` on the tape strictly before `ts_ms` (scans from the end)."""
    for day in reversed(segment_days(data_dir, coin)):
        if day > segment_day(ts_ms):
            continue
        path = segment_path(data_dir, coin, day)
        with open(path, "rb") as handle:
            fd = handle.fileno()
            end = _whole_lines_end(fd, os.fstat(fd).st_size)
            if end:
                _check_header(fd, path)
            best: Trade | None = None
            for raw, offset in _lines_backward(fd, end):
                if not offset:
                    break
                record = _decode(raw, path, offset, coin)
                if isinstance(record, Trade) and record.ts_ms < ts_ms:
                    if best is None or record.ts_ms > best.ts_ms:
                        best = record
                    elif best.ts_ms - record.ts_ms > LATE_SCAN_MS:
                        break  # far enough back: later lines cannot hold a newer trade
            if best is not None:
                return best
    return None
