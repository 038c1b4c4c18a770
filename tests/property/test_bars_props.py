"""Property tests for the bar state machine (services.aggregator.core).

A random trade stream (prices/sizes as exchange decimal strings, batches shuffled, quiet
stretches, some trades delayed beyond grace) is driven through `apply_trades` / `advance`
with the clock moving forward in random steps. The bars must equal an independent reference
(`sim.market.truth_rows` over the trades that were not late) and keep the OHLCV invariants.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.messages import Bar, Trade
from hlstream.common.timebucket import bucket_start
from hlstream.services.aggregator.core import LateTrade, advance, apply_trades, new_state
from hlstream.sim.market import format_units, truth_rows

T0 = 1_700_000_040_000  # aligned to 1 s, 5 s and 1 m
COINS = ("BTC", "ETH")
INTERVALS = {"1s": 1_000, "5s": 5_000}
GRACE_MS = 2_000


@dataclass(frozen=True)
class Step:
    """Advance the clock by `dt_ms`, then deliver trades that happened up to `delays` ago."""

    dt_ms: int
    trades: list[tuple[int, int, int, int, int]]  # coin index, delay ms, ticks, decimals, size
    shuffle_seed: int


steps = st.builds(
    Step,
    dt_ms=st.one_of(st.integers(0, 1_500), st.integers(1_500, 25_000)),  # incl. quiet stretches
    trades=st.lists(
        st.tuples(
            st.integers(0, len(COINS) - 1),
            st.one_of(st.integers(0, GRACE_MS - 1), st.integers(GRACE_MS, 9_000)),  # late too
            st.integers(1, 10_000),
            st.integers(0, 5),
            st.integers(1, 10**6),
        ),
        max_size=8,
    ),
    shuffle_seed=st.integers(0, 2**32 - 1),
)


def _trade(coin: str, ts_ms: int, ticks: int, decimals: int, size: int, tid: int) -> Trade:
    return Trade(coin, "buy", format_units(ticks, decimals), format_units(size, 3), ts_ms, tid, "")


def _venue(trade: Trade) -> dict[str, object]:
    return {"coin": trade.coin, "px": trade.price, "sz": trade.size, "time": trade.ts_ms}


def _run(script: list[Step]) -> tuple[list[Bar], list[LateTrade], dict, int]:
    """Drive the core; return bars, late trades, accepted trades per series, final now."""
    state = new_state(COINS, INTERVALS, GRACE_MS, T0 - 1)
    now = T0
    advanced_to = T0 - 1  # the latest now_ms passed to advance()
    bars: list[Bar] = []
    late: list[LateTrade] = []
    expected_late: list[tuple[str, int, int]] = []
    accepted: dict[tuple[str, str], list[Trade]] = defaultdict(list)
    tid = 0
    for step in script:
        now += step.dt_ms
        batch = []
        for coin_index, delay, ticks, decimals, size in step.trades:
            tid += 1
            ts = max(T0, now - delay)
            batch.append(_trade(COINS[coin_index], ts, ticks, decimals, size, tid))
        random.Random(step.shuffle_seed).shuffle(batch)  # batches are not time-ordered
        for trade in batch:  # reference lateness: window ended `grace` before last advance
            for label, interval_ms in INTERVALS.items():
                end = bucket_start(trade.ts_ms, interval_ms) + interval_ms
                if end <= advanced_to - GRACE_MS:
                    expected_late.append((label, trade.tid, end - interval_ms))
                else:
                    accepted[(trade.coin, label)].append(trade)
        late.extend(apply_trades(state, batch))
        bars.extend(advance(state, now))
        advanced_to = now
    final = now + 60_000
    bars.extend(advance(state, final))
    got_late = sorted((item.interval, item.trade.tid, item.window_ms) for item in late)
    assert got_late == sorted(expected_late), "late trades are reported exactly"
    return bars, late, accepted, final


def _series(bars: list[Bar], coin: str, label: str) -> list[Bar]:
    return [bar for bar in bars if bar.coin == coin and bar.interval == label]


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=25))
def test_bars_equal_reference_and_keep_invariants(script: list[Step]) -> None:
    bars, _late, accepted, final = _run(script)

    for bar in bars:
        low, high = Decimal(bar.low), Decimal(bar.high)
        assert low <= Decimal(bar.open) <= high and low <= Decimal(bar.close) <= high
        assert bar.complete, "joined before T0 and never tainted: every bar is complete"

    for coin in COINS:
        for label, interval_ms in INTERVALS.items():
            series = _series(bars, coin, label)
            trades = accepted[(coin, label)]
            if not trades:
                assert series == [], "no bars before the first trade of a coin"
                continue
            # Tiling: one bar per window, strictly consecutive, through the last closed window.
            starts = [bar.start_ms for bar in series]
            first = bucket_start(min(t.ts_ms for t in trades), interval_ms)
            last = bucket_start(final - GRACE_MS, interval_ms) - interval_ms
            assert starts == list(range(first, last + 1, interval_ms))
            # Exact OHLCV against the independent reference (arrival order breaks time ties).
            truth = truth_rows([_venue(t) for t in trades], interval_ms, first, last + 1)
            got = [(b.start_ms, b.open, b.high, b.low, b.close, b.volume) for b in series]
            assert got == truth
            # Count and volume are the sums of the window's accepted trades.
            by_window: dict[int, list[Trade]] = defaultdict(list)
            for trade in trades:
                by_window[bucket_start(trade.ts_ms, interval_ms)].append(trade)
            previous_close: str | None = None
            for bar in series:
                members = by_window.get(bar.start_ms, [])
                assert bar.trades == len(members)
                assert Decimal(bar.volume) == sum((Decimal(t.size) for t in members), Decimal(0))
                if not members:  # exactly one zero-volume bar at the previous close
                    assert previous_close is not None
                    assert (bar.open, bar.high, bar.low, bar.close) == (previous_close,) * 4
                    assert bar.volume == "0.0"
                previous_close = bar.close


window_trades = st.lists(
    st.tuples(
        st.integers(0, 4_999), st.integers(1, 10_000), st.integers(0, 4), st.integers(1, 10**6)
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(window_trades, st.randoms(use_true_random=False))
def test_shuffling_trades_within_a_window_keeps_high_low_volume_count(
    specs: list[tuple[int, int, int, int]], rng: random.Random
) -> None:
    trades = [
        _trade("BTC", T0 + off, ticks, dec, size, i)
        for i, (off, ticks, dec, size) in enumerate(specs)
    ]
    shuffled = list(trades)
    rng.shuffle(shuffled)
    results = []
    for order in (trades, shuffled):
        state = new_state(("BTC",), {"5s": 5_000}, GRACE_MS, T0 - 1)
        assert apply_trades(state, order) == []
        (bar,) = advance(state, T0 + 5_000 + GRACE_MS)
        results.append(bar)
    a, b = results
    assert (a.high, a.low, a.volume, a.trades) == (b.high, b.low, b.volume, b.trades)
    if len({t.ts_ms for t in trades}) == len(trades):  # distinct times: open/close too
        assert (a.open, a.close) == (b.open, b.close)


@settings(max_examples=200, deadline=None)
@given(st.integers(1_500_000_000_000, 2_500_000_000_000))
def test_one_day_windows_align_to_midnight_utc(ts_ms: int) -> None:
    state = new_state(("BTC",), {"1d": 86_400_000, "4h": 14_400_000}, 0, 0)
    apply_trades(state, [_trade("BTC", ts_ms, 5, 0, 1, 1)])
    bars = advance(state, ts_ms + 86_400_000 * 2)
    day = next(b for b in bars if b.interval == "1d")
    start = datetime.fromtimestamp(day.start_ms / 1000, tz=UTC)
    assert (start.hour, start.minute, start.second) == (0, 0, 0)
    assert day.start_ms <= ts_ms < day.start_ms + 86_400_000
    four = next(b for b in bars if b.interval == "4h")
    assert datetime.fromtimestamp(four.start_ms / 1000, tz=UTC).hour % 4 == 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30_000), st.integers(0, 30_000)), max_size=4),
    st.lists(st.integers(0, 29_999), min_size=1, max_size=10),
)
def test_bar_is_partial_exactly_when_a_taint_overlaps_its_window(
    taints: list[tuple[int, int]], offsets: list[int]
) -> None:
    from hlstream.services.aggregator.core import taint

    state = new_state(("BTC", "ETH"), {"5s": 5_000}, GRACE_MS, T0 - 1)
    apply_trades(state, [_trade("BTC", T0 + off, 5, 0, 1, i) for i, off in enumerate(offsets)])
    apply_trades(state, [_trade("ETH", T0 + 1, 5, 0, 1, 99)])
    ranges = [(T0 + min(a, b), T0 + max(a, b)) for a, b in taints]
    for lo, hi in ranges:
        taint(state, "BTC", lo, hi)
    bars = advance(state, T0 + 40_000)
    assert {bar.coin for bar in bars} == {"BTC", "ETH"}, "both coins traded: both close bars"
    for bar in bars:
        end = bar.start_ms + 5_000
        if bar.coin == "ETH":
            assert bar.complete
        else:
            overlaps = any(lo < end and hi >= bar.start_ms for lo, hi in ranges)
            assert bar.complete is not overlaps
