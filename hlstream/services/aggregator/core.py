"""Per-coin, per-interval OHLCV bar state machine. Pure: time comes in as `now_ms`.

Invariants:
- Each series (coin, interval) emits windows in strictly increasing order, one bar per
  window, without holes once it has a close to carry (an empty window carries it, volume 0).
- A window closes when `now_ms >= start + interval + grace`, never earlier: the venue's
  batches are not time-ordered, so a later trade does not prove a window over.
- A trade for a closed window is late: counted and reported, never merged into another bar.
- A bar is `complete` only if its whole window was watched: covered from its start
  (`joined_by_coin`, else `joined_ms`) and overlapped by no taint (gap, feed outage).
- A series' first close is the price of the newest trade offered before its first window
  (by exchange time, then order offered), however the venue's replay is split or ordered."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from hlstream.common.decimals import ZERO, format_decimal
from hlstream.common.messages import Bar, Trade
from hlstream.common.timebucket import bucket_start

ZERO_VOLUME = format_decimal(ZERO)
PRICES_MAX = 50_000  # distinct prices kept parsed in AggState.prices before it starts over


@dataclass(slots=True)
class OpenBar:
    """A window that has trades and has not closed yet."""

    start_ms: int
    open: str
    high: Decimal
    high_text: str
    low: Decimal
    low_text: str
    close: str
    first_ts: int
    last_ts: int
    volume: Decimal
    trades: int


@dataclass(slots=True)
class Series:
    coin: str
    interval: str
    interval_ms: int
    open_bars: dict[int, OpenBar] = field(default_factory=dict)
    next_start: int | None = None  # first window not yet emitted, once a close is known
    last_close: str | None = None
    closed_through: int = -1  # windows starting before this are closed (trades are late)
    seed_ts: int | None = None  # last_close seeded from a trade at this time (until a bar)


@dataclass(frozen=True, slots=True)
class LateTrade:
    """A trade whose window had already been closed when it arrived."""

    interval: str
    window_ms: int
    trade: Trade


@dataclass(slots=True)
class AggState:
    grace_ms: int
    joined_ms: int  # windows starting before this were not watched from their start
    joined_by_coin: dict[str, int] = field(default_factory=dict)  # per coin, from the tape
    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    by_coin: dict[str, list[Series]] = field(default_factory=dict)
    taints: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    late_trades: int = 0
    applied_trades: int = 0
    # A cache, not state (prices repeat, a few ticks apart): parsed once, never compared.
    prices: dict[str, Decimal] = field(default_factory=dict, compare=False, repr=False)


def new_state(
    coins: tuple[str, ...], intervals: dict[str, int], grace_ms: int, now_ms: int
) -> AggState:
    """Fresh state for `coins` x `intervals`, joined at `now_ms`."""
    state = AggState(grace_ms=grace_ms, joined_ms=now_ms)
    for coin in coins:
        for label, interval_ms in intervals.items():
            series = Series(coin, label, interval_ms)
            # Windows that ended before we joined are closed: trades for them are late.
            series.closed_through = bucket_start(now_ms - grace_ms, interval_ms)
            state.series[(coin, label)] = series
            state.by_coin.setdefault(coin, []).append(series)
    return state


def _open(start_ms: int, trade: Trade, price: Decimal, size: Decimal) -> OpenBar:
    return OpenBar(
        start_ms=start_ms,
        open=trade.price,
        high=price,
        high_text=trade.price,
        low=price,
        low_text=trade.price,
        close=trade.price,
        first_ts=trade.ts_ms,
        last_ts=trade.ts_ms,
        volume=size,
        trades=1,
    )


def apply_trades(state: AggState, trades: list[Trade]) -> list[LateTrade]:
    """Add trades to their open windows; return the ones that arrived too late."""
    # Hot path: bucket_start and the OHLCV update are inlined; the bars stay equal to a
    # reference built from the trades (tests/property/test_bars_props.py).
    late: list[LateTrade] = []
    prices = state.prices
    by_coin = state.by_coin
    for trade in trades:
        text = trade.price
        price = prices.get(text)
        if price is None:
            if len(prices) >= PRICES_MAX:
                prices.clear()
            price = prices[text] = Decimal(text)
        size = Decimal(trade.size)
        ts_ms = trade.ts_ms
        for series in by_coin.get(trade.coin, ()):
            start = ts_ms - ts_ms % series.interval_ms
            if start < series.closed_through:
                late.append(LateTrade(series.interval, start, trade))
                continue
            bar = series.open_bars.get(start)
            if bar is None:
                series.open_bars[start] = _open(start, trade, price, size)
                continue
            # open/close by exchange time, high/low by price
            if ts_ms < bar.first_ts:
                bar.open, bar.first_ts = text, ts_ms
            if ts_ms >= bar.last_ts:
                bar.close, bar.last_ts = text, ts_ms
            if price > bar.high:
                bar.high, bar.high_text = price, text
            elif price < bar.low:
                bar.low, bar.low_text = price, text
            bar.volume += size
            bar.trades += 1
    state.applied_trades += len(trades)
    state.late_trades += len(late)
    return late


def seed_trades(state: AggState, trades: list[Trade]) -> None:
    """Offer trades (late ones: the venue's subscribe replay, the tape) as first closes to the
    series that closed their window, so an illiquid coin gets carry-forward rows at once."""
    for trade in trades:
        for series in state.by_coin.get(trade.coin, ()):
            if bucket_start(trade.ts_ms, series.interval_ms) < series.closed_through:
                _offer_seed(series, trade)


def _offer_seed(series: Series, trade: Trade) -> None:
    if series.last_close is None:
        series.next_start = series.closed_through
    elif series.seed_ts is None or trade.ts_ms < series.seed_ts:
        return  # a close from a bar, or a newer seed, stands
    series.last_close = format_decimal(Decimal(trade.price))
    series.seed_ts = trade.ts_ms


def retire_coin(state: AggState, coin: str) -> bool:
    """Stop every series of a delisted coin; False when it was not aggregated."""
    series = state.by_coin.pop(coin, None)
    if series is None:
        return False
    for item in series:
        del state.series[(item.coin, item.interval)]
    state.taints.pop(coin, None)
    return True


class Emitted(NamedTuple):
    """Windows of one series, first_ms..last_ms (starts), already handed on as bars."""

    coin: str
    interval: str
    first_ms: int
    last_ms: int
    windows: int


def taint(state: AggState, coin: str | None, from_ms: int, to_ms: int) -> list[Emitted]:
    """Mark [from_ms, to_ms] as possibly incomplete for `coin` (None: every coin); return
    the windows in it already emitted (their bars cannot change: the caller reports them)."""
    out: list[Emitted] = []
    for name in set(state.by_coin) if coin is None else {coin}:
        state.taints.setdefault(name, []).append((from_ms, to_ms))
        for series in state.by_coin.get(name, ()):
            if series.next_start is None:
                continue
            step = series.interval_ms
            first = bucket_start(from_ms, step)
            last = min(bucket_start(to_ms, step), series.next_start - step)
            if last >= first:
                out.append(Emitted(name, series.interval, first, last, (last - first) // step + 1))
    return out


def _is_complete(state: AggState, coin: str, start_ms: int, end_ms: int) -> bool:
    if start_ms < state.joined_by_coin.get(coin, state.joined_ms):
        return False
    return not any(lo < end_ms and hi >= start_ms for lo, hi in state.taints.get(coin, ()))


def _bar_from_open(state: AggState, series: Series, bar: OpenBar) -> Bar:
    complete = _is_complete(state, series.coin, bar.start_ms, bar.start_ms + series.interval_ms)
    o, c = format_decimal(Decimal(bar.open)), format_decimal(Decimal(bar.close))
    h, low, v = format_decimal(bar.high), format_decimal(bar.low), format_decimal(bar.volume)
    coin, interval, trades = series.coin, series.interval, bar.trades
    return Bar(coin, interval, bar.start_ms, o, h, low, c, v, trades, complete, "ws")


def _carry_bar(state: AggState, series: Series, start_ms: int, close: str) -> Bar:
    complete = _is_complete(state, series.coin, start_ms, start_ms + series.interval_ms)
    coin, interval = series.coin, series.interval
    return Bar(coin, interval, start_ms, close, close, close, close, ZERO_VOLUME, 0, complete, "ws")


def _advance_series(state: AggState, series: Series, now_ms: int, out: list[Bar]) -> None:
    horizon = now_ms - state.grace_ms  # windows ending at or before this are closed
    closable = sorted(s for s in series.open_bars if s + series.interval_ms <= horizon)
    for start in closable:
        bar = series.open_bars.pop(start)
        _carry_until(state, series, start, out)
        closed = _bar_from_open(state, series, bar)
        out.append(closed)
        series.last_close, series.seed_ts = closed.close, None
        series.next_start = start + series.interval_ms
    latest_closed = bucket_start(horizon, series.interval_ms)
    _carry_until(state, series, latest_closed, out)
    series.closed_through = max(series.closed_through, latest_closed)


def _carry_until(state: AggState, series: Series, stop_ms: int, out: list[Bar]) -> None:
    """Emit carry-forward bars for empty windows from next_start up to (excluding) stop_ms."""
    if series.next_start is None or series.last_close is None:
        return
    while series.next_start < stop_ms:
        out.append(_carry_bar(state, series, series.next_start, series.last_close))
        series.next_start += series.interval_ms
        series.seed_ts = None


def advance(state: AggState, now_ms: int) -> list[Bar]:
    """Close every window that ended at least `grace` before `now_ms`; return the bars."""
    out: list[Bar] = []
    for series in state.series.values():
        _advance_series(state, series, now_ms, out)
    _prune_taints(state)
    return out


def _prune_taints(state: AggState) -> None:
    # Every window from a series' closed_through on may still be emitted: as a bar (its open
    # windows all start there or later) or as a carry-forward row (which an open bar further
    # on does not make any less pending), so a taint reaching there stays.
    oldest_open = min((s.closed_through for s in state.series.values()), default=0)
    for coin, ranges in state.taints.items():
        state.taints[coin] = [(lo, hi) for lo, hi in ranges if hi >= oldest_open]


def next_deadline(state: AggState) -> int | None:
    """The earliest `now_ms` at which `advance` would close something, or None."""
    deadlines = []
    for series in state.series.values():
        if series.open_bars:
            deadlines.append(min(series.open_bars) + series.interval_ms + state.grace_ms)
        if series.next_start is not None:
            deadlines.append(series.next_start + series.interval_ms + state.grace_ms)
    return min(deadlines, default=None)
