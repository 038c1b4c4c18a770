"""Property tests for the first rows after a fresh start (services.aggregator.core seeding).

The venue's subscribe replay reaches the aggregator in any order (newest first, shuffled),
in any number of batches (bus messages, a tape read one record at a time), and partly from
the tape (the newest trade before the earliest open window, then the rest). Every way must
give the same rows, and those rows must equal an independent reference
(`sim.market.truth_rows`): a carried close is the close of the newest trade before the
window by exchange time, then by feed order.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.messages import Bar, Trade
from hlstream.common.timebucket import bucket_start
from hlstream.services.aggregator.core import (
    AggState,
    advance,
    apply_trades,
    new_state,
    seed_trades,
)
from hlstream.sim.market import format_units, truth_rows

T0 = 1_700_000_040_000  # aligned to 5 s and 1 m
INTERVALS = {"5s": 5_000, "1m": 60_000}
GRACE_MS = 2_000
NOW = T0 + 37_500  # started: 5s windows before T0 + 35 s are closed, the 1m window T0 is open
END = T0 + 120_000 + GRACE_MS  # the last advance: closes every window of the replay
# Block times: the venue stamps every trade of a block with one time. Some before the 1m
# window, some between it and the first open 5s window, some in open windows.
BLOCKS = (-95_000, -61_000, -20_001, -4_137, 0, 1, 12_863, 20_863, 34_999, 35_000, 36_100)

replays = st.lists(
    st.tuples(st.sampled_from(BLOCKS), st.integers(24_800, 24_860), st.integers(1, 500)),
    min_size=1,
    max_size=30,
)


def _replay(specs: list[tuple[int, int, int]]) -> list[Trade]:
    """Trades in feed order (the order the venue executed them: time, then list order)."""
    ordered = sorted(enumerate(specs), key=lambda item: item[1][0])
    return [
        Trade("HYPE", "buy", format_units(ticks, 3), format_units(size, 2), T0 + offset, i, "")
        for i, (offset, ticks, size) in ordered
    ]


def _reorder(trades: list[Trade], rng: random.Random) -> list[Trade]:
    """A random order of `trades` in which trades of one block keep their feed order."""
    slots = list(range(len(trades)))
    rng.shuffle(slots)
    by_block: dict[int, list[int]] = {}
    for slot, trade in sorted(zip(slots, trades, strict=True), key=lambda pair: pair[0]):
        by_block.setdefault(trade.ts_ms, []).append(slot)
    out: list[Trade | None] = [None] * len(trades)
    positions = {ts: iter(sorted(found)) for ts, found in by_block.items()}
    for trade in trades:
        out[next(positions[trade.ts_ms])] = trade
    return [trade for trade in out if trade is not None]


def _split(trades: list[Trade], rng: random.Random) -> list[list[Trade]]:
    cuts = sorted(rng.sample(range(1, len(trades)), rng.randint(0, len(trades) - 1)))
    return [trades[a:b] for a, b in zip([0, *cuts], [*cuts, len(trades)], strict=True)]


def _state() -> AggState:
    return new_state(("HYPE",), INTERVALS, GRACE_MS, NOW)


def _apply(state: AggState, batches: list[list[Trade]]) -> list[Bar]:
    for batch in batches:
        late = apply_trades(state, batch)
        seed_trades(state, [item.trade for item in late])  # the shell's bus and tape path
    return advance(state, END)


def _via_tape(trades: list[Trade], rng: random.Random) -> list[Bar]:
    """The shell's first sight of a taped coin: seed from the newest trade before the
    earliest open window, then the tape from there (the rest of the replay) in batches."""
    state = _state()
    from_ms = min(series.closed_through for series in state.by_coin["HYPE"])
    before = [trade for trade in trades if trade.ts_ms < from_ms]
    if before:
        newest = max(range(len(before)), key=lambda i: (before[i].ts_ms, i))
        seed_trades(state, [before[newest]])
    rest = [trade for trade in trades if trade.ts_ms >= from_ms]
    return _apply(state, _split(rest, rng) if rest else [])


@settings(max_examples=300, deadline=None)
@given(replays, st.randoms(use_true_random=False))
def test_any_order_and_split_of_the_replay_gives_the_same_rows(
    specs: list[tuple[int, int, int]], rng: random.Random
) -> None:
    feed = _replay(specs)
    reference = _apply(_state(), [feed])
    shuffled = _reorder(feed, rng)
    assert _apply(_state(), _split(shuffled, rng)) == reference
    assert _apply(_state(), [[trade] for trade in shuffled]) == reference  # a tape read
    assert _via_tape(shuffled, rng) == reference


@settings(max_examples=300, deadline=None)
@given(replays, st.randoms(use_true_random=False))
def test_rows_after_a_fresh_start_equal_the_reference(
    specs: list[tuple[int, int, int]], rng: random.Random
) -> None:
    feed = _replay(specs)
    bars = _apply(_state(), _split(_reorder(feed, rng), rng))
    venue = [{"coin": t.coin, "px": t.price, "sz": t.size, "time": t.ts_ms} for t in feed]
    for label, interval_ms in INTERVALS.items():
        series = [bar for bar in bars if bar.interval == label]
        closed_through = bucket_start(NOW - GRACE_MS, interval_ms)
        first = bucket_start(min(t.ts_ms for t in feed), interval_ms)
        start = max(first, closed_through)
        got = [(b.start_ms, b.open, b.high, b.low, b.close, b.volume) for b in series]
        assert got == truth_rows(venue, interval_ms, start, END - GRACE_MS), label
