"""`hlstream rebuild`'s bars as one polars query over a coin's tape records: byte for byte the
rows `rebuild.tape_bars` gives (held equal by tests/property/test_rebuild_columnar_props.py).
Pure: the records come in as a frame. Where only the per-record path can tell (a value that
needs more than its 28 digits, a text that is not a plain positive decimal, a trade it would
count late), `columnar_bars` returns None and the caller takes that path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from hlstream.common.csvrow import Row
from hlstream.common.messages import Trade
from hlstream.common.tape.format import Record
from hlstream.common.timebucket import bucket_start
from hlstream.rebuild import LATE_SLACK_MS, Window
from hlstream.services.aggregator.core import ZERO_VOLUME

COLUMNS = ("kind", "coin", "ts_ms", "price", "size", "to_ms")  # a gap's `ts_ms` is its start
SCHEMA = pl.Schema({name: pl.Int64 if name.endswith("_ms") else pl.String for name in COLUMNS})
DIGITS = 28  # significant digits of Python's default decimal context (the per-record path)
PRECISION = 38  # polars decimals hold 38 digits
_DECIMAL_RE = r"^[0-9]{1,32}(\.[0-9]{1,32})?$"  # is_positive_decimal, bar the non-zero test


@dataclass(frozen=True, slots=True)
class ColumnarBars:
    """The rows of every window in the range, in window order, and the inexact windows."""

    rows: list[Row]
    inexact: set[int]


def records_frame(records: Iterable[Record]) -> pl.DataFrame:
    """Tape records (as read from a CSV day) in the columns `columnar_bars` reads."""
    cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for r in records:
        if isinstance(r, Trade):
            row: tuple[Any, ...] = ("T", r.coin, r.ts_ms, r.price, r.size, None)
        else:
            row = ("G", r.coin, r.from_ms, None, None, r.to_ms)
        for name, value in zip(COLUMNS, row, strict=True):
            cols[name].append(value)
    return pl.DataFrame(cols, schema=SCHEMA)


def _bucket(expr: pl.Expr, interval_ms: int) -> pl.Expr:
    return expr // interval_ms * interval_ms


def _well_formed(frame: pl.DataFrame, coin: str) -> bool:
    """Every row a trade or a gap of `coin` with a time, every gap with an end."""
    kind = pl.col("kind")
    checks = frame.select(
        (pl.col("coin") == coin).fill_null(False).all().alias("coin"),
        kind.is_in(["T", "G"]).fill_null(False).all().alias("kind"),
        pl.col("ts_ms").is_not_null().all().alias("ts_ms"),
        ((kind != "G") | pl.col("to_ms").is_not_null()).fill_null(False).all().alias("to_ms"),
    )
    return all(checks.row(0))


def _feed(frame: pl.DataFrame, window: Window) -> pl.DataFrame:
    """The records in feed order, marked: a trade in the window, and the newest time of the
    window's trades so far (from `from_ms`), as the per-record path tracks it."""
    ts = pl.col("ts_ms")
    in_range = (pl.col("kind") == "T") & (ts >= window.from_ms) & (ts < window.to_ms)
    newest = pl.when(in_range).then(ts).otherwise(window.from_ms).cum_max()
    return frame.with_columns(in_range.alias("in_range"), newest.alias("newest"))


def _maybe_late(feed: pl.DataFrame, window: Window) -> bool:
    """True if a trade may be late for the per-record path: its window starts before the one
    `LATE_SLACK_MS` behind the newest trade before it (the most that path can have closed)."""
    before = pl.col("newest").shift(1, fill_value=window.from_ms)
    late = _bucket(pl.col("ts_ms"), window.interval_ms) < _bucket(
        before - LATE_SLACK_MS, window.interval_ms
    )
    return bool(feed.select((pl.col("in_range") & late).any()).item())


def _gaps(feed: pl.DataFrame, window: Window) -> list[tuple[int, int]]:
    """(from, to) of each gap marker, from cut to the first window still open when it is read."""
    closed = pl.min_horizontal(pl.col("newest") - LATE_SLACK_MS, pl.lit(window.to_ms))
    closed = pl.max_horizontal(_bucket(closed, window.interval_ms), pl.lit(window.from_ms))
    gaps = feed.filter(pl.col("kind") == "G").select(
        pl.max_horizontal(pl.col("ts_ms"), closed), pl.col("to_ms")
    )
    return [(int(lo), int(hi)) for lo, hi in gaps.iter_rows()]


@dataclass(frozen=True, slots=True)
class _Shape:
    """The most integer digits, decimals and digits in all among a column's decimal texts."""

    ints: int
    scale: int
    digits: int


def _shape(texts: pl.Expr, name: str) -> list[pl.Expr]:
    dot = texts.str.find(".", literal=True)
    length = texts.str.len_bytes().cast(pl.Int64)
    ok = texts.str.contains(_DECIMAL_RE) & texts.str.contains("[1-9]")
    return [
        dot.fill_null(length).max().alias(f"{name}_ints"),
        (length - dot - 1).fill_null(0).max().alias(f"{name}_scale"),
        (length - dot.is_not_null().cast(pl.Int64)).max().alias(f"{name}_digits"),
        ok.fill_null(False).all().alias(f"{name}_ok"),
    ]


def _trades(feed: pl.DataFrame) -> tuple[pl.DataFrame, int, int] | None:
    """The window's trades in time order (ties in feed order), prices and sizes as exact
    decimals, and the scale of each; None if a text is not a positive decimal or a value
    might need more digits than the per-record path keeps."""
    trades = feed.filter(pl.col("in_range")).select("ts_ms", "price", "size")
    if trades.height == 0:
        return (
            trades.cast({"price": pl.Decimal(PRECISION, 0), "size": pl.Decimal(PRECISION, 0)}),
            0,
            0,
        )
    stats = trades.select(
        *_shape(pl.col("price"), "price"),
        *_shape(pl.col("size"), "size"),
        (pl.col("ts_ms").diff().fill_null(0) >= 0).all().alias("sorted"),
    ).row(0, named=True)
    if not (stats["price_ok"] and stats["size_ok"]):
        return None
    price = _Shape(stats["price_ints"], stats["price_scale"], stats["price_digits"])
    size = _Shape(stats["size_ints"], stats["size_scale"], stats["size_digits"])
    if price.digits > DIGITS or price.ints + price.scale > PRECISION:
        return None
    # A window's volume is below count * 10**ints, so at the largest scale it has fewer than
    # 28 digits: the per-record sum never rounds, and this one cannot overflow.
    if trades.height * 10 ** (size.ints + size.scale) >= 10**DIGITS:
        return None
    trades = trades.with_columns(
        pl.col("price").cast(pl.Decimal(PRECISION, price.scale)),
        pl.col("size").cast(pl.Decimal(PRECISION, size.scale)),
    )
    if not stats["sorted"]:
        trades = trades.sort("ts_ms", maintain_order=True)
    return trades, price.scale, size.scale


def _format(dec: pl.Expr, scale: int) -> pl.Expr:
    """A decimal as `format_decimal` writes it: no trailing zeros, at least one decimal."""
    text = dec.cast(pl.String)
    if scale == 0:
        return text + ".0"
    stripped = text.str.strip_chars_end("0")
    return pl.when(stripped.str.ends_with(".")).then(stripped + "0").otherwise(stripped)


def _bars(
    trades: pl.DataFrame, interval_ms: int, price_scale: int, size_scale: int
) -> pl.DataFrame:
    """One row per window with trades, in window order: its OHLCV as row text."""
    price, size = pl.col("price"), pl.col("size")
    return trades.group_by(
        _bucket(pl.col("ts_ms"), interval_ms).alias("start"), maintain_order=True
    ).agg(
        _format(price.first(), price_scale).alias("open"),
        _format(price.max(), price_scale).alias("high"),
        _format(price.min(), price_scale).alias("low"),
        _format(price.last(), price_scale).alias("close"),
        _format(size.sum(), size_scale).alias("volume"),
    )


def _inexact(
    first: int, window: Window, covered_from: int | None, gaps: list[tuple[int, int]]
) -> set[int]:
    """Windows from `first` that start before coverage or that a gap overlaps."""
    step = window.interval_ms
    covered = window.to_ms if covered_from is None else covered_from
    out = set(range(first, min(covered, window.to_ms), step))
    for lo, hi in gaps:
        low = max(bucket_start(lo, step), first)
        out.update(range(low, min(bucket_start(hi, step) + step, window.to_ms), step))
    return out


def columnar_bars(
    coin: str, window: Window, frame: pl.DataFrame, covered_from: int | None, seed_close: str | None
) -> ColumnarBars | None:
    """The rows `tape_bars` gives for the records in `frame` (in feed order, `COLUMNS`), with
    the same inexact windows; None when only the per-record path can tell (see the module)."""
    if not _well_formed(frame, coin):
        return None
    feed = _feed(frame, window)
    if _maybe_late(feed, window):
        return None
    picked = _trades(feed)
    if picked is None:
        return None
    trades, price_scale, size_scale = picked
    bars = _bars(trades, window.interval_ms, price_scale, size_scale)
    if seed_close is not None:
        first = window.from_ms
    elif bars.height:
        first = int(bars["start"][0])
    else:
        return ColumnarBars([], set())
    starts = pl.int_range(first, window.to_ms, window.interval_ms, dtype=pl.Int64, eager=True)
    grid = pl.DataFrame({"start": starts}).join(bars, on="start", how="left").sort("start")
    carry = pl.col("close").shift(1).forward_fill().fill_null(pl.lit(seed_close, pl.String))
    out = grid.select(
        "start",
        *(pl.coalesce(name, carry) for name in ("open", "high", "low", "close")),
        pl.col("volume").fill_null(pl.lit(ZERO_VOLUME)),
    )
    rows = [
        Row(*values) for values in zip(*(out[name].to_list() for name in out.columns), strict=True)
    ]
    return ColumnarBars(rows, _inexact(first, window, covered_from, _gaps(feed, window)))
