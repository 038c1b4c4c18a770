"""Property tests for the ingest Deduper: any re-delivery yields each unique trade exactly once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hlstream.common.messages import Trade
from hlstream.services.ingest.core.dedupe import Deduper

COINS = ["BTC", "ETH", "ETHFI"]
# Times stay inside the default 15 min horizon, so no trade is legitimately too old.
trades = st.builds(
    lambda coin, ts, tid, buy: Trade(coin, "buy" if buy else "sell", "1.5", "0.1", ts, tid, ""),
    st.sampled_from(COINS),
    st.integers(1_700_000_000_000, 1_700_000_000_000 + 14 * 60_000),
    st.integers(0, 2**50 - 1) | st.integers(0, 5),
    st.booleans(),
)
batches = st.lists(st.lists(trades, max_size=12), max_size=12)


def key(trade: Trade) -> tuple[str, int, int]:
    return trade.coin, trade.ts_ms, trade.tid


def feed(deduper: Deduper, sequence: list[list[Trade]]) -> list[Trade]:
    out: list[Trade] = []
    for batch in sequence:
        fresh, _ = deduper.admit(batch)
        out.extend(fresh)
    return out


@given(batches)
def test_feeding_the_sequence_twice_equals_once(sequence: list[list[Trade]]) -> None:
    deduper = Deduper()

    first = feed(deduper, sequence)
    second = feed(deduper, sequence)

    unique = {key(t) for batch in sequence for t in batch}
    assert second == []
    assert sorted(key(t) for t in first) == sorted(unique)


@given(batches, st.data())
def test_random_redelivery_yields_each_key_exactly_once(
    sequence: list[list[Trade]], data: st.DataObject
) -> None:
    delivered: list[list[Trade]] = []
    for batch in sequence:
        delivered.append(batch)
        seen_so_far = [t for b in delivered for t in b]
        if seen_so_far and data.draw(st.booleans()):
            replay = data.draw(st.lists(st.sampled_from(seen_so_far), max_size=30))
            delivered.append(data.draw(st.permutations(replay)))
    deduper = Deduper()
    counts: dict[tuple[str, int, int], int] = {}
    total_duplicates = 0

    for batch in delivered:
        fresh, duplicates = deduper.admit(batch)
        total_duplicates += duplicates
        for trade in fresh:
            counts[key(trade)] = counts.get(key(trade), 0) + 1

    unique = {key(t) for b in sequence for t in b}
    assert set(counts) == unique
    assert all(count == 1 for count in counts.values())
    assert total_duplicates == sum(len(b) for b in delivered) - len(unique)


# Few times, many tids: every time is a bucket of many keys, and a tiny horizon and cap make
# the deduper forget buckets all the time.
crowded = st.builds(
    lambda coin, ts, tid: Trade(coin, "buy", "1.5", "0.1", ts, tid, ""),
    st.sampled_from(COINS[:2]),
    st.integers(1_700_000_000_000, 1_700_000_000_030),
    st.integers(0, 40),
)


@given(st.lists(st.lists(crowded, max_size=20), max_size=20), st.integers(1, 12))
def test_forgotten_keys_are_never_admitted_again(sequence: list[list[Trade]], cap: int) -> None:
    deduper = Deduper(horizon_ms=10, max_keys_per_coin=cap)
    admitted: set[tuple[str, int, int]] = set()
    offered = duplicates = 0

    for batch in sequence + sequence:  # everything comes twice
        fresh, dropped = deduper.admit(batch)
        offered += len(batch)
        duplicates += dropped
        for trade in fresh:
            assert key(trade) not in admitted
            admitted.add(key(trade))
        assert deduper.key_count() <= cap * 2  # per coin

    assert len(admitted) + duplicates + deduper.too_old == offered
    unique = {key(t) for batch in sequence for t in batch}
    assert admitted <= unique
    if sequence and sequence[0]:  # the very first trade always goes through
        assert key(sequence[0][0]) in admitted
