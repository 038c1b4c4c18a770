"""Property: for any trade stream and any kill point, checkpoint -> restore -> replay the tape
-> continue gives exactly the bars of an uninterrupted run (services/aggregator/checkpoint.py).

The model of a `kill -9`: the aggregator checkpointed after step `c` (state and un-acked bars,
through msgpack as on disk) and died after step `k >= c`, so bars of steps c+1..k may or may
not have reached the writer. It restarts `down_ms` later: everything taped up to then (steps
c+1.. up to the restart time) is replayed without closing windows in between, then the clock
runs on. The writer keeps one row per window, so the union of what was written before the
kill and what the new process emits must equal the uninterrupted run, and a window emitted
by both must be byte-identical. The feed is on time here (every trade arrives within grace),
which is what the tape gives a restarted aggregator.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.messages import Bar, Trade
from hlstream.services.aggregator.checkpoint import decode_checkpoint, encode_checkpoint
from hlstream.services.aggregator.core import AggState, advance, apply_trades, new_state
from hlstream.sim.market import format_units

T0 = 1_700_000_040_000
COINS = ("BTC", "ETH")
INTERVALS = {"1s": 1_000, "5s": 5_000, "1m": 60_000}
GRACE_MS = 2_000

step_st = st.tuples(
    st.one_of(st.integers(0, 1_500), st.integers(1_500, 20_000)),  # clock step, quiet stretches
    st.lists(  # (coin, delay < grace, ticks, decimals, size)
        st.tuples(
            st.integers(0, 1),
            st.integers(0, GRACE_MS - 1),
            st.integers(1, 10_000),
            st.integers(0, 5),
            st.integers(1, 10**6),
        ),
        max_size=6,
    ),
)
Step = tuple[int, list[tuple[int, int, int, int, int]]]


def _batches(script: list[Step]) -> list[tuple[int, list[Trade]]]:
    now, tid, out = T0, 0, []
    for dt, specs in script:
        now += dt
        batch = []
        for coin, delay, ticks, decimals, size in specs:
            tid += 1
            price, qty = format_units(ticks, decimals), format_units(size, 3)
            batch.append(
                Trade(
                    COINS[coin],
                    "buy" if tid % 2 == 0 else "sell",
                    price,
                    qty,
                    max(T0, now - delay),
                    tid,
                    "",
                )
            )
        out.append((now, batch))
    return out


def _key(bar: Bar) -> tuple[str, str, int]:
    return (bar.coin, bar.interval, bar.start_ms)


def _fresh() -> AggState:
    return new_state(COINS, INTERVALS, GRACE_MS, T0 - 1)


def _round_trip(state: AggState, pending: list[Bar]) -> tuple[AggState, list[Bar]]:
    consumed = {("BTC", "2023-11-14"): 123}
    checkpoint = decode_checkpoint(encode_checkpoint(state, consumed, pending, T0))
    assert checkpoint.consumed == consumed
    return checkpoint.state, checkpoint.pending


@settings(max_examples=300, deadline=None)
@given(
    st.lists(step_st, min_size=1, max_size=20),
    st.data(),
    st.integers(0, 30_000),
    st.integers(0, 3),
)
def test_restart_from_checkpoint_and_tape_equals_uninterrupted(
    script: list[Step], data: st.DataObject, down_ms: int, unacked: int
) -> None:
    batches = _batches(script)
    final = batches[-1][0] + 120_000

    whole = _fresh()
    expected: list[Bar] = []
    for now, batch in batches:
        assert apply_trades(whole, batch) == []
        expected.extend(advance(whole, now))
    expected.extend(advance(whole, final))

    c = data.draw(st.integers(-1, len(batches) - 1), label="checkpoint after step")
    k = data.draw(st.integers(max(c, 0), len(batches) - 1), label="killed after step")
    state = _fresh()
    written: dict[tuple[str, str, int], Bar] = {}
    emitted: list[Bar] = []
    snapshot = _round_trip(state, [])
    for index, (now, batch) in enumerate(batches[: k + 1]):
        apply_trades(state, batch)
        emitted.extend(advance(state, now))
        if index == c:
            pending = emitted[len(emitted) - unacked :] if unacked else []
            snapshot = _round_trip(state, pending)
            assert snapshot[1] == pending
    for bar in emitted:
        written[_key(bar)] = bar

    restored, pending = snapshot
    restart_ms = batches[k][0] + down_ms
    rest = batches[c + 1 :]
    taped = [batch for now, batch in rest if now <= restart_ms]
    live = [(now, batch) for now, batch in rest if now > restart_ms]
    again: list[Bar] = list(pending)  # re-sent from the checkpoint
    for batch in taped:
        assert apply_trades(restored, batch) == [], "the tape replay is never late"
    again.extend(advance(restored, restart_ms))
    for now, batch in live:
        assert apply_trades(restored, batch) == []
        again.extend(advance(restored, now))
    again.extend(advance(restored, max(final, restart_ms)))

    for bar in again:
        if _key(bar) in written:
            assert written[_key(bar)] == bar, "a window emitted twice is identical"
        written[_key(bar)] = bar
    assert sorted(written.values(), key=_key) == sorted(expected, key=_key)
