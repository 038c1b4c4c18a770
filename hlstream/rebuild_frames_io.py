"""What `hlstream rebuild` reads of a tape with compacted days as polars columns: the range's
records as one frame, and three lookups that answer as common/tape/readers_io.py does, from a
compacted day's columns where the answer is plain from them, else by calling the reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from hlstream.common.errors import IntegrityError
from hlstream.common.tape import readers_io
from hlstream.common.tape.format import archive_path, segment_day, segment_path
from hlstream.common.tape.readers_io import read_span, segment_days
from hlstream.rebuild_columnar import COLUMNS, SCHEMA, records_frame

Seg = tuple[str, int]  # a tape segment's day and size in bytes


def _archived(data_dir: Path, coin: str, day: str) -> Path | None:
    """The archive of a compacted day, None while its CSV is there (readers use the CSV)."""
    path = archive_path(data_dir, coin, day)
    if segment_path(data_dir, coin, day).exists() or not path.exists():
        return None
    return path


def _read(path: Path, columns: list[str]) -> pl.DataFrame:
    try:
        return pl.read_parquet(path, columns=columns).cast({c: SCHEMA[c] for c in columns})
    except pl.exceptions.PolarsError as exc:
        raise IntegrityError(f"{path}: unreadable tape archive ({exc})") from None


def has_archived(data_dir: Path, coin: str, segments: list[Seg]) -> bool:
    return any(_archived(data_dir, coin, day) is not None for day, _ in segments)


def tape_frame(
    data_dir: Path, coin: str, segments: list[Seg], step: Callable[[int], None]
) -> pl.DataFrame:
    """The records of `segments` as one frame in feed order (`rebuild_columnar.COLUMNS`): a
    compacted day's columns as stored, a CSV day's records as its reader checks them."""
    frames = []
    for day, size in segments:
        archived = _archived(data_dir, coin, day)
        if archived is None:
            spans = read_span(data_dir, coin, day, 0, size)  # reads the archive if compacted now
            frames.append(records_frame(record for record, _ in spans))
        else:
            frames.append(_read(archived, list(COLUMNS)))
        step(size)
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=SCHEMA)


def coverage_start_ms(data_dir: Path, coin: str) -> int | None:
    """`readers_io.coverage_start_ms`: just after the oldest time among the first records."""
    days = segment_days(data_dir, coin)
    archived = _archived(data_dir, coin, days[0]) if days else None
    if archived is not None:
        times = _read(archived, ["ts_ms"])["ts_ms"].head(readers_io.FIRST_BATCH_RECORDS)
        if len(times):
            return int(times.min()) + 1  # type: ignore[arg-type]
    return readers_io.coverage_start_ms(data_dir, coin)


def newest_ts_ms(data_dir: Path, coin: str) -> int | None:
    """`readers_io.newest_ts_ms`: the newest time among the last trades of the newest day."""
    days = segment_days(data_dir, coin)
    archived = _archived(data_dir, coin, days[-1]) if days else None
    if archived is not None:
        frame = _read(archived, ["kind", "ts_ms"]).filter(pl.col("kind") == "T")
        if frame.height >= readers_io.NEWEST_WINDOW_TRADES:
            return int(frame["ts_ms"].tail(readers_io.NEWEST_WINDOW_TRADES).max())  # type: ignore[arg-type]
    return readers_io.newest_ts_ms(data_dir, coin)


def last_price_before(data_dir: Path, coin: str, ts_ms: int) -> str | None:
    """The price of `readers_io.last_trade_before`: from the newest day with a trade before
    `ts_ms`, its last such trade when those are in time order in that day (what the backward
    scan finds then); else, or on a CSV day, the scan's."""
    for day in reversed(segment_days(data_dir, coin)):
        if day > segment_day(ts_ms):
            continue
        archived = _archived(data_dir, coin, day)
        if archived is None:
            break
        frame = _read(archived, ["kind", "ts_ms", "price"])
        before = frame.filter((pl.col("kind") == "T") & (pl.col("ts_ms") < ts_ms))
        if before.height == 0:
            continue
        if not before["ts_ms"].is_sorted():
            break
        return str(before["price"][-1])
    else:
        return None  # no day up to `ts_ms` has a trade before it
    trade = readers_io.last_trade_before(data_dir, coin, ts_ms)
    return None if trade is None else trade.price
