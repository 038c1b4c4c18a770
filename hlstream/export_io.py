"""`hlstream export trades|bars`: one Parquet or CSV file of the trades (from the tape) or bars
(from the bar files) of the coins in [from, to), decimals as their exact text. Never less than
asked: when the tape or a bar file does not hold the range whole, it says which and exits 1
without writing; the file is written atomically.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.csvrow import parse_row
from hlstream.common.durable import write_atomic
from hlstream.common.errors import ConfigError, HlstreamError
from hlstream.common.filenames import csv_filename
from hlstream.common.messages import Gap
from hlstream.common.tape.readers_io import coverage_start_ms, read_tape, tape_coins
from hlstream.common.timebucket import parse_interval
from hlstream.rebuild_io import coverage_end
from hlstream.services.writer.dirlock import writer_running

TRADE_COLUMNS = ("coin", "ts_ms", "tid", "side", "price", "size", "hash", "buyer", "seller")
BAR_COLUMNS = ("coin", "start_ms", "open", "high", "low", "close", "volume")


class NotKeptError(HlstreamError):
    """The data asked for is not all there."""


@dataclass(frozen=True, slots=True)
class ExportRequest:
    kind: str  # trades | bars
    coins: tuple[str, ...]
    from_ms: int
    to_ms: int
    interval: str | None
    fmt: str  # parquet | csv
    out: Path


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _trades(settings: Settings, request: ExportRequest, coin: str) -> list[tuple[Any, ...]]:
    data_dir, from_ms, to_ms = settings.data_dir, request.from_ms, request.to_ms
    start = coverage_start_ms(data_dir, coin)
    if start is None or start > from_ms:
        held = "nothing" if start is None else f"trades from {_utc(start)} on"
        raise NotKeptError(f"{coin}: the tape holds {held}, not from {_utc(from_ms)}")
    end = coverage_end(settings, coin, writer_running(data_dir))
    if end is None or end < to_ms:
        raise NotKeptError(f"{coin}: the tape holds trades up to {_utc(end or 0)} only")
    rows = []
    for record in read_tape(data_dir, coin, from_ms, to_ms):
        if isinstance(record, Gap):
            span = f"{_utc(record.from_ms)} to {_utc(record.to_ms)}"
            raise NotKeptError(f"{coin}: the tape lacks trades from {span} ({record.reason})")
        fields = (record.ts_ms, record.tid, record.side, record.price, record.size, record.hash)
        rows.append((coin, *fields, *(record.users or (None, None))))
    return rows


def _bars(settings: Settings, request: ExportRequest, coin: str) -> list[tuple[Any, ...]]:
    interval = request.interval or ""
    step = parse_interval(interval)
    path = settings.data_dir / csv_filename(coin, interval)
    try:
        lines = path.read_text().splitlines()[1:]
    except FileNotFoundError:
        raise NotKeptError(f"{coin}: no {interval} bar file {path}") from None
    rows = [parse_row(line) for line in lines if line]
    first = request.from_ms - request.from_ms % step
    last = (request.to_ms - 1) - (request.to_ms - 1) % step
    starts = {row.start_ms for row in rows}
    for window in (first, last):
        if window not in starts:
            raise NotKeptError(f"{coin}: {path.name} has no row for {_utc(window)}")
    return [
        (coin, r.start_ms, r.open, r.high, r.low, r.close, r.volume)
        for r in rows
        if first <= r.start_ms <= last
    ]


def _encode(columns: tuple[str, ...], rows: list[tuple[Any, ...]], fmt: str) -> bytes:
    import polars as pl

    schema = {
        name: pl.Int64 if name in ("ts_ms", "tid", "start_ms") else pl.String for name in columns
    }
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    out = io.BytesIO()
    if fmt == "parquet":
        frame.write_parquet(out, compression="zstd")
    else:
        frame.write_csv(out)
    return out.getvalue()


def run_export(settings: Settings, request: ExportRequest, err: TextIO = sys.stderr) -> int:
    """Write the export, or say what is not kept and return 1."""
    if request.to_ms <= request.from_ms:
        raise ConfigError("--to must be after --from")
    coins = tape_coins(settings.data_dir) if request.coins == (ALL_COINS,) else request.coins
    reader, columns = (_trades, TRADE_COLUMNS) if request.kind == "trades" else (_bars, BAR_COLUMNS)
    rows: list[tuple[Any, ...]] = []
    progress = tqdm(coins, desc="export", unit="coin", file=err, leave=False)
    try:
        for coin in progress:
            rows += reader(settings, request, coin)
    except (HlstreamError, OSError, ValueError) as exc:
        print(f"hlstream export: not written: {exc}", file=err)
        return 1
    finally:
        progress.close()
    write_atomic(request.out, _encode(columns, rows, request.fmt))
    print(f"exported {len(rows)} {request.kind} of {len(coins)} coins to {request.out}")
    return 0
