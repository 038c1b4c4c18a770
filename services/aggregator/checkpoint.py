"""The aggregator's checkpoint: all bar state plus the tape positions it reflects. Pure.

`to_checkpoint(state, consumed, pending, covered_ms)` -> a msgpack-ready map;
`from_checkpoint(data)` -> `Checkpoint` or ProtocolError. The shell writes it atomically every
`checkpoint_seconds` and on a clean stop (run_dir/aggregator-checkpoint.msgpack), and after
any restart loads it and replays the tape from `consumed`, so no window of any interval
depends on process memory:

    state     every series (open windows with exact Decimal sums as strings, next window to
              emit, last close, closed-through mark), taints, joined times, counters
    consumed  {(coin, day): byte offset}: how far each tape segment has been applied
    pending   bars (and inexact-row notices) not yet acknowledged by the writer (re-sent)

Invariant (tests/property/test_checkpoint_props.py): for any trades and any kill point,
checkpoint -> restore -> replay the rest gives exactly the bars of an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import (
    Bar,
    Inexact,
    bar_from_wire,
    bar_to_wire,
    inexact_from_wire,
    inexact_to_wire,
)
from hlstream.common.wire import as_int, need
from hlstream.services.aggregator.core import AggState, OpenBar, Series

CHECKPOINT_VERSION = 1
Consumed = dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a restarted aggregator resumes from."""

    state: AggState
    consumed: Consumed
    pending: list[Bar | Inexact]
    covered_ms: int  # how far ingest had vouched for the feed (windows after it are held)


def to_checkpoint(
    state: AggState, consumed: Consumed, pending: list[Bar | Inexact], covered_ms: int
) -> dict[str, Any]:
    """Everything needed to resume exactly."""
    return {
        "v": CHECKPOINT_VERSION,
        "covered_ms": covered_ms,
        "grace_ms": state.grace_ms,
        "joined_ms": state.joined_ms,
        "joined_by_coin": dict(state.joined_by_coin),
        "late_trades": state.late_trades,
        "applied_trades": state.applied_trades,
        "taints": {coin: [list(r) for r in ranges] for coin, ranges in state.taints.items()},
        "series": [_series_to_map(series) for series in state.series.values()],
        "consumed": [[coin, day, offset] for (coin, day), offset in sorted(consumed.items())],
        "pending": [_pending_to_wire(item) for item in pending],
    }


def _series_to_map(series: Series) -> dict[str, Any]:
    return {
        "coin": series.coin,
        "interval": series.interval,
        "interval_ms": series.interval_ms,
        "next_start": series.next_start,
        "last_close": series.last_close,
        "seed_ts": series.seed_ts,
        "closed_through": series.closed_through,
        "open": [
            [
                bar.start_ms,
                bar.open,
                bar.high_text,
                bar.low_text,
                bar.close,
                bar.first_ts,
                bar.last_ts,
                str(bar.volume),
                bar.trades,
            ]
            for bar in series.open_bars.values()
        ],
    }


def from_checkpoint(data: Any) -> Checkpoint:
    """Rebuild what `to_checkpoint` saved; ProtocolError if anything is off."""
    if not isinstance(data, dict) or data.get("v") != CHECKPOINT_VERSION:
        raise ProtocolError("not a version-1 aggregator checkpoint")
    state = AggState(grace_ms=need(data, "grace_ms", int), joined_ms=need(data, "joined_ms", int))
    state.joined_by_coin = {
        str(coin): as_int(ms, "joined_by_coin")
        for coin, ms in need(data, "joined_by_coin", dict).items()
    }
    state.late_trades = need(data, "late_trades", int)
    state.applied_trades = need(data, "applied_trades", int)
    for coin, ranges in need(data, "taints", dict).items():
        state.taints[str(coin)] = [(as_int(lo, "taint"), as_int(hi, "taint")) for lo, hi in ranges]
    for item in need(data, "series", list):
        series = _series_from_map(item)
        state.series[(series.coin, series.interval)] = series
        state.by_coin.setdefault(series.coin, []).append(series)
    consumed: Consumed = {}
    for entry in need(data, "consumed", list):
        coin, day, offset = entry
        consumed[(str(coin), str(day))] = as_int(offset, "consumed offset")
    pending = [_pending_from_wire(item) for item in need(data, "pending", list)]
    return Checkpoint(state, consumed, pending, need(data, "covered_ms", int))


def _pending_to_wire(item: Bar | Inexact) -> dict[str, Any]:
    if isinstance(item, Bar):
        return bar_to_wire(item)
    return {"notice": inexact_to_wire(item)}


def _pending_from_wire(data: Any) -> Bar | Inexact:
    if isinstance(data, dict) and "notice" in data:
        return inexact_from_wire(need(data, "notice", dict))
    return bar_from_wire(data)


def _series_from_map(data: Any) -> Series:
    series = Series(
        need(data, "coin", str), need(data, "interval", str), need(data, "interval_ms", int)
    )
    next_start, last_close = data.get("next_start"), data.get("last_close")
    series.next_start = None if next_start is None else as_int(next_start, "next_start")
    series.last_close = None if last_close is None else str(last_close)
    seed_ts = data.get("seed_ts")  # absent from checkpoints of older releases
    series.seed_ts = None if seed_ts is None else as_int(seed_ts, "seed_ts")
    series.closed_through = need(data, "closed_through", int)
    try:
        for start, open_, high, low, close, first_ts, last_ts, volume, trades in need(
            data, "open", list
        ):
            series.open_bars[as_int(start, "open start")] = OpenBar(
                start_ms=start,
                open=open_,
                high=Decimal(high),
                high_text=high,
                low=Decimal(low),
                low_text=low,
                close=close,
                first_ts=first_ts,
                last_ts=last_ts,
                volume=Decimal(volume),
                trades=trades,
            )
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise ProtocolError(f"checkpoint open window is malformed: {exc}") from None
    return series
