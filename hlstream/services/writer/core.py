"""Pure writer logic: bar and candle validation, repair and backfill planning.
Invariant: a fill plan is strictly increasing, one bar per window, after the last row; a window
the venue omits carries the previous close (volume `0.0`), and nothing precedes a first close."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hlstream.common.csvrow import Row
from hlstream.common.decimals import format_decimal, parse_decimal
from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Bar, Decoder, Inexact
from hlstream.common.timebucket import bucket_start

EMPTY_VOLUME = "0.0"
# candleSnapshot returns at most about this many candles per request (DESIGN.md).
MAX_CANDLES = 5000
CANDLE_WEIGHT_BASE = 20
CANDLE_ROWS_PER_WEIGHT = 60
REST_SETTLE_MS = 1_500  # a window that ended less recently may lack trades on the venue


def _check_decimal(name: str, text: object, *, negative_ok: bool = True) -> Decimal:
    value = parse_decimal(text)
    if value is None:
        raise ProtocolError(f"{name} {text!r} is not a decimal string")
    if not negative_ok and value < 0:
        raise ProtocolError(f"{name} {text!r} is negative")
    return value


def validate_bar(bar: Bar, interval_ms: int) -> None:
    """Raise ProtocolError unless the bar is aligned and its fields are sane decimals."""
    if bar.start_ms <= 0 or bar.start_ms % interval_ms != 0:
        raise ProtocolError(f"bar start_ms {bar.start_ms} is not aligned to {bar.interval}")
    low = _check_decimal("low", bar.low)
    high = _check_decimal("high", bar.high)
    for name, text in (("open", bar.open), ("close", bar.close)):
        value = _check_decimal(name, text)
        if not low <= value <= high:
            raise ProtocolError(f"bar {name} {text} is outside low..high {bar.low}..{bar.high}")
    _check_decimal("volume", bar.volume, negative_ok=False)
    for text in (bar.open, bar.high, bar.low, bar.close, bar.volume):
        if any(ch in text for ch in ',\n\r"') or "e" in text.lower():
            raise ProtocolError(f"decimal {text!r} is not in plain exchange format")


def row_of(bar: Bar) -> Row:
    """The Row a bar becomes once written."""
    return Row(bar.start_ms, bar.open, bar.high, bar.low, bar.close, bar.volume)


def hole_before(start_ms: int, last_row: Row | None, interval_ms: int) -> tuple[int, int] | None:
    """The windows [start, end) missing between the file's last row and a bar at `start_ms`."""
    if last_row is None or start_ms <= last_row.start_ms + interval_ms:
        return None
    return last_row.start_ms + interval_ms, start_ms


def _whole(candle: dict[str, Any], key: str, default: int | None = None) -> int:
    value = candle.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"candle {key}={value!r} is not a whole number")
    return value


def candle_to_bar(candle: object, coin: str, interval: str, interval_ms: int) -> Bar:
    """Validate one candleSnapshot entry and turn it into a complete REST bar: the checks of
    `validate_bar`, on the prices canonicalised."""
    if not isinstance(candle, dict):
        raise ProtocolError(f"candle is {type(candle).__name__}, expected an object")
    for key, ours in (("s", coin), ("i", interval)):
        if key in candle and candle[key] != ours:
            raise ProtocolError(f"candle {key}={candle[key]!r} is not {ours!r}")
    o, h, low, c, v = (
        format_decimal(_check_decimal(f"candle {k}", candle.get(k))) for k in "ohlcv"
    )
    start_ms, trades = _whole(candle, "t"), _whole(candle, "n", 0)
    bar = Bar(coin, interval, start_ms, o, h, low, c, v, trades, True, "rest")
    validate_bar(bar, interval_ms)
    return bar


def candles_to_bars(candles: object, coin: str, interval: str, interval_ms: int) -> list[Bar]:
    """Validate a candleSnapshot answer; return its bars ascending, one per window. Any bad
    candle rejects the whole answer: a skipped one would be carried forward, a guess."""
    if not isinstance(candles, list):
        raise ProtocolError(f"candleSnapshot answer is {type(candles).__name__}, expected a list")
    by_start: dict[int, Bar] = {}
    for candle in candles:
        bar = candle_to_bar(candle, coin, interval, interval_ms)
        by_start[bar.start_ms] = bar
    return [by_start[start] for start in sorted(by_start)]


def carry_bar(coin: str, interval: str, start_ms: int, close: str) -> Bar:
    """An empty window: O=H=L=C=previous close, volume 0."""
    return Bar(coin, interval, start_ms, close, close, close, close, EMPTY_VOLUME, 0, True, "fill")


def plan_fill(
    last_row: Row | None,
    interval_ms: int,
    candles: list[Bar],
    from_ms: int,
    to_ms_exclusive: int,
    coin: str,
    interval: str,
) -> list[Bar]:
    """Bars for every window in [from_ms, to_ms_exclusive) after the last row: the candle, else
    the previous close carried forward, else nothing (no close known yet)."""
    start = bucket_start(from_ms, interval_ms)
    if start < from_ms:
        start += interval_ms
    prev_close: str | None = None
    if last_row is not None:
        start = max(start, last_row.start_ms + interval_ms)
        prev_close = last_row.close
    by_start = {bar.start_ms: bar for bar in candles}
    out: list[Bar] = []
    for window in range(start, to_ms_exclusive, interval_ms):
        candle = by_start.get(window)
        if candle is not None:
            out.append(candle)
            prev_close = candle.close
        elif prev_close is not None:
            out.append(carry_bar(coin, interval, window, prev_close))
    return out


def backfill_range(
    last_row: Row | None, interval_ms: int, now_ms: int, backfill_hours: float
) -> tuple[int, int] | None:
    """The windows [start_ms, end_ms) startup backfill should fill, or None: from the last row
    (else `backfill_hours` back) to before the window of `now_ms - REST_SETTLE_MS`."""
    if backfill_hours <= 0:
        return None
    end_ms = bucket_start(now_ms - REST_SETTLE_MS, interval_ms)
    reach_ms = bucket_start(now_ms - int(backfill_hours * 3_600_000), interval_ms)
    start_ms = reach_ms if last_row is None else last_row.start_ms + interval_ms
    if start_ms >= end_ms:
        return None
    return start_ms, end_ms


def rest_reach_start(now_ms: int, interval_ms: int) -> int:
    """The oldest window candleSnapshot still serves: it returns only the MAX_CANDLES most
    recent candles of an interval, the unfinished current one included."""
    return bucket_start(now_ms, interval_ms) - (MAX_CANDLES - 1) * interval_ms


def candle_covers(candle: Bar, seen: Bar) -> bool:
    """True when an exchange candle can be the whole window a partial bar saw part of: at least
    as many trades, as much volume and as wide a range (else the exchange is not done yet)."""
    return (
        candle.start_ms == seen.start_ms
        and candle.trades >= seen.trades
        and Decimal(candle.volume) >= Decimal(seen.volume)
        and Decimal(candle.high) >= Decimal(seen.high)
        and Decimal(candle.low) <= Decimal(seen.low)
    )


def window_count(start_ms: int, end_ms: int, interval_ms: int) -> int:
    """How many windows [start_ms, end_ms) spans."""
    return max(0, (end_ms - start_ms + interval_ms - 1) // interval_ms)


def candle_weight(rows: int) -> float:
    """REST weight of one candleSnapshot returning `rows` candles: 20 + rows/60."""
    return CANDLE_WEIGHT_BASE + min(rows, MAX_CANDLES) / CANDLE_ROWS_PER_WEIGHT


def candle_request(coin: str, interval: str, start_ms: int, end_ms: int) -> dict[str, object]:
    """The /info body asking for candles of windows starting in [start_ms, end_ms)."""
    req = {"coin": coin, "interval": interval, "startTime": start_ms, "endTime": end_ms - 1}
    return {"type": "candleSnapshot", "req": req}


_READ: Decoder[Bar | Inexact] = Decoder((Bar, Inexact))  # the writer's one socket


def decode_writer_frame(frame: bytes, payload: bytes) -> Bar | Inexact:
    """Strictly decode a `bar` or `inexact` payload; raise ProtocolError if malformed."""
    if frame not in (b"bar", b"inexact"):
        raise ProtocolError(f"unknown frame {frame[:20]!r}: expected b'bar' or b'inexact'")
    _, message = _READ.decode(payload)
    if message.kind != frame.decode():
        raise ProtocolError(f"message type {message.kind!r} under {frame!r} frame")
    return message


def notice_windows(notice: Inexact, interval_ms: int) -> list[int]:
    """Window starts a notice names; ProtocolError unless aligned."""
    if notice.first_ms % interval_ms or notice.last_ms % interval_ms:
        raise ProtocolError(f"inexact notice not aligned to {notice.interval}")
    return list(range(notice.first_ms, notice.last_ms + 1, interval_ms))
