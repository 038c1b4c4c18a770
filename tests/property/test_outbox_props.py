"""Property tests for the aggregator Outbox: any interleaving of add / due / ack, with sends
and acks lost or delayed, delivers every bar to the writer exactly in order per series.

The writer model is the real writer's contract: a bar at or before its file's last row is a
duplicate (acked, not written); the exact next window is written and acked; anything later
would be a hole, which must never happen while nothing is dropped.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.services.aggregator.outbox import BarKey, Outbox

SERIES = [("BTC", "5s"), ("BTC", "1m"), ("ETH", "5s")]
STEP = {"5s": 5_000, "1m": 60_000}

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, len(SERIES) - 1)),
        st.tuples(st.just("tick"), st.integers(0, 5_000)),  # advance clock, then due()
        st.tuples(st.just("deliver"), st.integers(0, 50)),  # writer handles a sent bar
        st.tuples(st.just("lose"), st.integers(0, 50)),  # a sent bar dies with a connection
        st.tuples(st.just("ack"), st.integers(0, 50)),  # an ack reaches the aggregator
        st.tuples(st.just("lose_ack"), st.integers(0, 50)),
    ),
    max_size=120,
)


class WriterModel:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], list[int]] = {key: [] for key in SERIES}

    def receive(self, key: BarKey) -> bool:
        rows = self.files[(key[0], key[1])]
        if rows and key[2] <= rows[-1]:
            return True  # duplicate: ack again
        step = STEP[key[1]]
        assert not rows or key[2] == rows[-1] + step, f"hole or reorder at {key}"
        rows.append(key[2])
        return True


@settings(max_examples=400, deadline=None)
@given(ops, st.integers(1, 3_000))
def test_every_bar_reaches_the_writer_in_order_per_series(
    script: list[tuple[str, int]], resend_ms: int
) -> None:
    outbox = Outbox(resend_ms=resend_ms)
    writer = WriterModel()
    added: dict[tuple[str, str], list[int]] = {key: [] for key in SERIES}
    wire: list[BarKey] = []  # sent, not yet handled by the writer
    acks: list[BarKey] = []  # acks in flight back to the aggregator
    now = 0
    next_start = {key: 1_700_000_000_000 for key in SERIES}

    def flush_due() -> None:
        sent = outbox.due(now)
        heads = [(key[0], key[1]) for key, _ in sent]
        assert len(heads) == len(set(heads)), "at most one bar per series in flight"
        for key, payload in sent:
            assert payload == repr(key).encode()
            wire.append(key)

    for op, arg in script:
        if op == "add":
            series = SERIES[arg]
            start = next_start[series]
            next_start[series] += STEP[series[1]]
            added[series].append(start)
            outbox.add((series[0], series[1], start), repr((series[0], series[1], start)).encode())
        elif op == "tick":
            now += arg
            flush_due()
        elif op in ("deliver", "lose") and wire:
            key = wire.pop(arg % len(wire))
            if op == "deliver" and writer.receive(key):
                acks.append(key)
        elif op in ("ack", "lose_ack") and acks:
            key = acks.pop(arg % len(acks))
            if op == "ack":
                outbox.ack(key)

    # Recovery: the connection is healthy again; keep resending until the outbox is empty.
    for _ in range(10 * (sum(len(v) for v in added.values()) + 2)):
        if outbox.size == 0:
            break
        now += resend_ms
        flush_due()
        while wire:
            key = wire.pop(0)
            if writer.receive(key):
                outbox.ack(key)
        for key in acks:  # late acks of earlier deliveries are harmless
            outbox.ack(key)
        acks.clear()
    assert outbox.size == 0
    assert outbox.dropped == 0
    assert writer.files == added


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(SERIES) - 1), min_size=1, max_size=60), st.integers(1, 20))
def test_bounded_outbox_keeps_size_and_counts_drops(adds: list[int], max_bars: int) -> None:
    outbox = Outbox(max_bars=max_bars)
    for i, index in enumerate(adds):
        coin, interval = SERIES[index]
        outbox.add((coin, interval, i), b"x")
        assert outbox.size <= max_bars
    assert outbox.size + outbox.dropped == len(adds)
    assert outbox.size == sum(len(q.bars) for q in outbox.queues.values())
