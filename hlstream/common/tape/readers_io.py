"""Trade tape readers: whole segments, ranges, resume-from-position, spans, tail scans.

Every reader stops at the last whole line, so a reader racing the writer, or a crash, never
yields half a record (`tape_torn_line_ignored`); a malformed whole line is corruption
(IntegrityError naming path and byte offset). A day compacted to Parquet (tape/archive_io.py)
is read from it transparently, at the offsets its CSV had.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from hlstream.common.durable import last_line_end
from hlstream.common.errors import IntegrityError, ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import Trade
from hlstream.common.tape.archive_io import (
    archive_fingerprint,
    archived_backward,
    read_archived,
)
from hlstream.common.tape.format import (
    ARCHIVE_SUFFIX,
    HEADER_BYTES,
    TAPE_DIR,
    Record,
    TapePosition,
    archive_path,
    coin_dir,
    coverage_start,
    header,
    header_users,
    is_segment_name,
    name_day,
    parse_record,
    segment_day,
    segment_path,
)

CHUNK_BYTES = 1 << 16  # first read of a backward scan; doubled for a line longer than that
TORN_LOG_EVERY_S = 60.0
FIRST_BATCH_RECORDS = 1_024  # at least a subscribe replay (the venue sends ~30 trades)
NEWEST_WINDOW_TRADES = 10_000  # `newest_ts_ms` looks this far back from the end
# `last_trade_before` stops this many lines and this far in time past its best trade: more
# than any venue frame holds out of order.
LATE_SCAN_LINES = 256
LATE_SCAN_MS = 60_000


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def segment_days(data_dir: Path | str, coin: str, *, csv_only: bool = False) -> list[str]:
    """Days that have a segment for `coin`, CSV or compacted (`csv_only`: CSV), oldest first."""
    names = _listdir(coin_dir(data_dir, coin))
    if csv_only:
        names = [name for name in names if is_segment_name(name)]
    return sorted({day for name in names if (day := name_day(name)) is not None})


def _open_day(data_dir: Path | str, coin: str, day: str) -> BinaryIO | Path:
    """The day's CSV segment open for reading, else the path of its Parquet archive (the CSV
    is removed only once the archive exists); FileNotFoundError if it has neither."""
    try:
        return open(segment_path(data_dir, coin, day), "rb")  # noqa: SIM115 (caller closes)
    except FileNotFoundError:
        archived = archive_path(data_dir, coin, day)
        if not archived.exists():
            raise
        return archived


def segment_size(data_dir: Path | str, coin: str, day: str) -> int:
    """The byte length of a day's segment: of its CSV, or of the CSV its archive was made of."""
    source = _open_day(data_dir, coin, day)
    if isinstance(source, Path):
        return archive_fingerprint(source).csv_bytes
    with source:
        return os.fstat(source.fileno()).st_size


def lines_backward(fd: int, end: int) -> Iterator[tuple[bytes, int]]:
    """Whole lines (with `\\n`) before `end` (a line boundary), newest first, with offsets."""
    stop, chunk = end, CHUNK_BYTES
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
        chunk = chunk * 2 if high == len(block) else CHUNK_BYTES
        stop = start + high


def check_header(fd: int, path: Path) -> bool:
    """Whether the segment open at `fd` has the users columns; IntegrityError if it does not
    start with a tape header."""
    users = header_users(os.pread(fd, len(HEADER_BYTES), 0))
    if users is None:
        raise IntegrityError(f"{path} does not start with the tape header; refusing to use it")
    return users


def decode_line(raw: bytes, path: Path, offset: int, coin: str, users: bool = True) -> Record:
    """Parse one whole line of the segment of `coin`; IntegrityError if it is not a record."""
    try:
        record = parse_record(raw.decode("utf-8"), users)
    except (UnicodeDecodeError, ProtocolError) as exc:
        raise IntegrityError(f"{path} byte {offset}: corrupt tape record: {exc}") from None
    if record.coin != coin:
        raise IntegrityError(f"{path} byte {offset}: record of {record.coin!r} in {coin!r} tape")
    return record


def _report_torn(log: EventLog | None, path: Path, nbytes: int) -> None:
    if log is not None:
        key, event = f"tape_torn:{path}", "tape_torn_line_ignored"
        log.warning_limited(key, TORN_LOG_EVERY_S, event, path=str(path), bytes=nbytes)


def _seek_start(
    handle: BinaryIO, path: Path, start: int, log: EventLog | None
) -> tuple[int, bool] | None:
    """Check the header and move to `start` (at least past the header): the offset and whether
    the segment has the users columns; None if it holds no records."""
    first = handle.readline()
    if not first.endswith(b"\n"):
        if first:  # crashed, or being created, while the header was written
            _report_torn(log, path, len(first))
        return None
    users = header_users(first)
    if users is None or first != header(users):
        raise IntegrityError(f"{path} does not start with the tape header; refusing to read it")
    if start <= len(first):
        return len(first), users
    handle.seek(start - 1)
    if handle.read(1) != b"\n":
        raise IntegrityError(f"{path}: tape position {start} is not the end of a whole line")
    return start, users


def _read_segment(
    data_dir: Path | str, coin: str, day: str, start: int, log: EventLog | None
) -> Iterator[tuple[Record, int]]:
    """Records of one segment from byte `start`, each with the offset just after it."""
    source = _open_day(data_dir, coin, day)
    if isinstance(source, Path):
        yield from read_archived(source, coin, start)
        return
    with source as handle:
        path = Path(handle.name)
        found = _seek_start(handle, path, start, log)
        if found is None:
            return
        offset, users = found
        for raw in handle:
            if not raw.endswith(b"\n"):
                _report_torn(log, path, len(raw))
                return
            record = decode_line(raw, path, offset, coin, users)
            offset += len(raw)
            yield record, offset


def _overlaps(record: Record, from_ms: int, to_ms: int | None) -> bool:
    if isinstance(record, Trade):
        return from_ms <= record.ts_ms and (to_ms is None or record.ts_ms < to_ms)
    return record.to_ms >= from_ms and (to_ms is None or record.from_ms < to_ms)


def read_tape(
    data_dir: Path | str, coin: str, from_ms: int, to_ms: int | None = None
) -> Iterator[Record]:
    """Trades of `coin` with from_ms <= ts_ms < to_ms and the gaps overlapping that range,
    oldest day first, each segment in append order."""
    if to_ms is not None and to_ms <= from_ms:
        return
    first = segment_day(from_ms)
    last = None if to_ms is None else segment_day(to_ms - 1)
    for day in segment_days(data_dir, coin):
        if first <= day and (last is None or day <= last):
            for record, _ in _read_segment(data_dir, coin, day, 0, None):
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

    A segment named is read from its latest offset; any other segment from its start, if
    newer than the oldest named (all of them when none is). Late trades of a day are found
    while its position is among `positions`: checkpoint the positions of yesterday and today.
    """
    offsets: dict[str, int] = {}
    for position in positions:
        if position.coin != coin:
            raise ValueError(f"tape position of {position.coin!r} passed for {coin!r}")
        offsets[position.day] = max(offsets.get(position.day, 0), position.offset)
    oldest = min(offsets) if offsets else ""
    for day in segment_days(data_dir, coin):
        if day >= oldest:
            for record, end in _read_segment(data_dir, coin, day, offsets.get(day, 0), log):
                yield record, TapePosition(coin, day, end)


def read_span(
    data_dir: Path | str, coin: str, day: str, start: int, end: int, *, log: EventLog | None = None
) -> Iterator[tuple[Record, TapePosition]]:
    """The records in bytes [start, end) of one segment."""
    for record, offset in _read_segment(data_dir, coin, day, start, log):
        if offset > end:
            return
        yield record, TapePosition(coin, day, offset)


def tape_coins(data_dir: Path | str) -> list[str]:
    """Every coin with a tape, named as its records name it, sorted."""
    root = Path(data_dir) / TAPE_DIR
    return sorted({coin for folder in _listdir(root) if (coin := folder_coin(root / folder))})


def folder_coin(folder: Path) -> str | None:
    """The coin whose tape `folder` holds, from its first record; None if it holds none."""
    for name in sorted(os.listdir(folder)):
        if name.endswith(ARCHIVE_SUFFIX) and name_day(name):
            import polars as pl

            coins = pl.read_parquet(folder / name, columns=["coin"], n_rows=1)["coin"].to_list()
            if coins:
                return str(coins[0])
        elif is_segment_name(name):
            with open(folder / name, "rb") as handle:
                users = header_users(handle.readline())
                line = handle.readline()
            if line.endswith(b"\n") and users is not None:
                return parse_record(line.decode("utf-8"), users).coin
    return None


def coverage_start_ms(data_dir: Path | str, coin: str) -> int | None:
    """`coverage_start` of the first `FIRST_BATCH_RECORDS` records of `coin`'s tape."""
    for day in segment_days(data_dir, coin):
        records = _read_segment(data_dir, coin, day, 0, None)
        first = [record for record, _ in islice(records, FIRST_BATCH_RECORDS)]
        if first:
            return coverage_start(first)  # later days hold later records only
    return None


def _trades_backward(
    data_dir: Path | str, coin: str, days: list[str]
) -> Iterator[tuple[str, Trade]]:
    """(day, trade) of `coin` from the end of each of `days`' segments, in the given order."""
    for day in days:
        source = _open_day(data_dir, coin, day)
        if isinstance(source, Path):
            records = archived_backward(source, coin)
            yield from ((day, r) for r in records if isinstance(r, Trade))
            continue
        with source as handle:
            path, fd = Path(handle.name), handle.fileno()
            end = last_line_end(fd, os.fstat(fd).st_size)
            users = check_header(fd, path) if end else True
            for raw, offset in lines_backward(fd, end):
                if offset:  # offset 0 is the header
                    record = decode_line(raw, path, offset, coin, users)
                    if isinstance(record, Trade):
                        yield day, record


def tail_trades(data_dir: Path | str, coin: str, n: int) -> list[Trade]:
    """Up to `n` trades of `coin`, newest segment first and from each segment's end."""
    days = segment_days(data_dir, coin)[::-1]
    return [trade for _, trade in islice(_trades_backward(data_dir, coin, days), max(n, 0))]


def newest_ts_ms(data_dir: Path | str, coin: str) -> int | None:
    """Exchange time of the newest trade of `coin` among its last `NEWEST_WINDOW_TRADES`: a
    late trade is older, never newer, than those before it, so the newest lies near the end."""
    trades = tail_trades(data_dir, coin, NEWEST_WINDOW_TRADES)
    return max((trade.ts_ms for trade in trades), default=None)


def last_trade_before(data_dir: Path | str, coin: str, ts_ms: int) -> Trade | None:
    """The newest trade of `coin` strictly before `ts_ms`; of several at that time, the last
    appended. Lines are in time order but for frames the venue sends out of order (a replay
    may span minutes), so the scan from the end stops only `LATE_SCAN_LINES` lines and
    `LATE_SCAN_MS` past the best trade so far."""
    last_day = segment_day(ts_ms)
    days = [day for day in reversed(segment_days(data_dir, coin)) if day <= last_day]
    best: Trade | None = None
    best_day = ""
    since_best = 0
    for day, trade in _trades_backward(data_dir, coin, days):
        if best is not None and day != best_day:
            return best  # an older day cannot hold a newer trade
        if trade.ts_ms < ts_ms:
            if best is None or trade.ts_ms > best.ts_ms:
                best, best_day, since_best = trade, day, 0
                continue
            since_best += 1
            if since_best >= LATE_SCAN_LINES and best.ts_ms - trade.ts_ms > LATE_SCAN_MS:
                return best  # far enough back: earlier lines cannot hold a newer trade
    return best
