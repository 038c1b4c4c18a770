"""Pure dedupe and replay-gap judgement of ingest.

- `Deduper.admit` never returns a trade whose key (coin, ts_ms, tid) it returned before, across
  reconnects and restarts (the shell seeds it from the tape). Keys live in buckets per exchange
  time (a venue block shares one time: one lookup per frame), forgotten a bucket at a time in
  the order opened once `horizon_ms` behind their coin's newest trade, or while the coin holds
  over `max_keys_per_coin`; an unknown trade at or below the newest forgotten key is dropped as
  `too_old` rather than risk publishing it twice. The venue replays only its last ~30 trades,
  so the bounds cost nothing and keep memory flat at any trade rate.
- `ReplayCheck` reports a `Gap` only when trades may be missing: the coin traded before, the
  subscribe replay shares none of those trades and starts no earlier than the newest of them
  (at the same millisecond the venue's block may have been cut on both sides).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from hlstream.common.messages import Gap, Trade
from hlstream.common.status import TradeActivity

DEFAULT_HORIZON_MS = 15 * 60 * 1000
DEFAULT_MAX_KEYS_PER_COIN = 20_000
REPLAY_GAP_REASON = "replay_no_overlap"


@dataclass
class _CoinKeys:
    """Keys seen for one coin: tids per exchange time, and the times in the order opened."""

    buckets: dict[int, set[int]] = field(default_factory=dict)
    order: deque[int] = field(default_factory=deque)
    count: int = 0  # keys over all buckets
    newest_ms: int | None = None
    floor_ms: int | None = None  # newest forgotten key: unknown trades at or below are too old


class Deduper:
    """Drops trades already admitted, keyed on (coin, ts_ms, tid); see the module docstring."""

    def __init__(
        self,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        max_keys_per_coin: int = DEFAULT_MAX_KEYS_PER_COIN,
    ) -> None:
        self.horizon_ms = horizon_ms
        self.max_keys_per_coin = max_keys_per_coin
        self._coins: dict[str, _CoinKeys] = {}
        self.too_old = 0  # unknown trades dropped as too old to judge

    def newest_ms(self, coin: str) -> int | None:
        seen = self._coins.get(coin)
        return None if seen is None else seen.newest_ms

    def newest_by_coin(self) -> dict[str, int]:
        return {c: s.newest_ms for c, s in self._coins.items() if s.newest_ms is not None}

    def activity_by_coin(self) -> dict[str, TradeActivity]:
        """Per coin: distinct trade times held, and the ms from the first opened to the newest."""
        return {
            c: TradeActivity(len(s.order), max(0, s.newest_ms - s.order[0]))
            for c, s in self._coins.items()
            if s.newest_ms is not None and s.order
        }

    def key_count(self) -> int:
        return sum(seen.count for seen in self._coins.values())

    def count_known(self, trades: Iterable[Trade]) -> int:
        """How many of `trades` were admitted before (without admitting anything)."""
        count = 0
        for trade in trades:
            seen = self._coins.get(trade.coin)
            tids = None if seen is None else seen.buckets.get(trade.ts_ms)
            if tids is not None and trade.tid in tids:
                count += 1
        return count

    def admit(self, trades: Iterable[Trade]) -> tuple[list[Trade], int]:
        """(trades never seen before, in order; duplicates); too old ones count in `too_old`."""
        fresh: list[Trade] = []
        duplicates = 0
        touched: list[_CoinKeys] = []
        coin: str | None = None
        seen = _CoinKeys()  # replaced by the first trade's coin
        buckets, order = seen.buckets, seen.order
        horizon = self.horizon_ms
        last_ms, tids = -1, set()  # the bucket of the previous trade (a frame shares one)
        for trade in trades:
            if trade.coin != coin:  # batches are one coin: look it up once
                coin = trade.coin
                known = self._coins.get(coin)
                if known is None:
                    known = self._coins[coin] = _CoinKeys()
                seen, buckets, order = known, known.buckets, known.order
                touched.append(seen)
                last_ms = -1
            ts_ms, tid = trade.ts_ms, trade.tid
            if ts_ms != last_ms:
                found = buckets.get(ts_ms)
                if found is not None and tid in found:
                    duplicates += 1
                    continue
                newest, floor = seen.newest_ms, seen.floor_ms
                if (newest is not None and ts_ms < newest - horizon) or (
                    floor is not None and ts_ms <= floor
                ):
                    self.too_old += 1
                    continue
                if found is None:
                    found = buckets[ts_ms] = set()
                    order.append(ts_ms)
                if newest is None or ts_ms > newest:
                    seen.newest_ms = ts_ms
                last_ms, tids = ts_ms, found
            elif tid in tids:
                duplicates += 1
                continue
            tids.add(tid)
            seen.count += 1
            fresh.append(trade)
        for seen in touched:
            if seen.newest_ms is not None:
                self._evict(seen, seen.newest_ms - self.horizon_ms)
        return fresh, duplicates

    def _evict(self, seen: _CoinKeys, cutoff_ms: int) -> None:
        order, buckets, cap = seen.order, seen.buckets, self.max_keys_per_coin
        if not order or (order[0] >= cutoff_ms and seen.count <= cap):
            return  # nothing to forget (the common case)
        floor = seen.floor_ms
        while order and (order[0] < cutoff_ms or seen.count > cap):
            ts_ms = order.popleft()
            seen.count -= len(buckets.pop(ts_ms))
            floor = ts_ms if floor is None else max(floor, ts_ms)
        seen.floor_ms = floor


class ReplayCheck:
    """Which coins still await their subscribe replay (each connection's own coins)."""

    def __init__(self) -> None:
        self._pending: set[str] = set()

    def on_connect(self, coins: Iterable[str]) -> None:
        """A (re)connect subscribing `coins`: the next trades frame of each is its replay."""
        self._pending.update(coins)

    def is_pending(self, coin: str) -> bool:
        return coin in self._pending

    def any_pending(self) -> bool:
        return bool(self._pending)

    def settle(self) -> None:
        """Give up waiting for replays (a coin that never traded sends none)."""
        self._pending.clear()

    def check(
        self, coin: str, trades: Sequence[Trade], known: int, last_ts_ms: int | None
    ) -> Gap | None:
        """A Gap if this frame of `coin` is its replay and proves missed trades; `known` of
        `trades` were admitted before, `last_ts_ms` is the coin's newest time before it."""
        if coin not in self._pending:
            return None
        self._pending.discard(coin)
        if last_ts_ms is None or not trades or known > 0:
            return None
        oldest_ms = min(trade.ts_ms for trade in trades)
        if oldest_ms < last_ts_ms:
            return None
        return Gap(coin=coin, from_ms=last_ts_ms, to_ms=oldest_ms, reason=REPLAY_GAP_REASON)


class Admission(NamedTuple):
    """What one coin's trades frame yields: trades to publish, counts, and a proven gap."""

    fresh: list[Trade]
    duplicates: int
    too_old: int
    gap: Gap | None


def admit_batch(deduper: Deduper, replay: ReplayCheck, coin: str, batch: list[Trade]) -> Admission:
    """Dedupe one coin's trades frame and judge it as a subscribe replay. The newest time and
    known count are read BEFORE `admit` changes both: after, every replay would look known."""
    last_ms = deduper.newest_ms(coin)
    known = deduper.count_known(batch) if replay.is_pending(coin) else 0
    too_old_before = deduper.too_old
    fresh, duplicates = deduper.admit(batch)
    gap = replay.check(coin, batch, known, last_ms)
    return Admission(fresh, duplicates, deduper.too_old - too_old_before, gap)


def by_coin(trades: Iterable[Trade], coin: str, delisted: set[str]) -> dict[str, list[Trade]]:
    """A frame's trades per coin, in order, without the delisted coins' (`coin`: the frame's
    one coin, as the venue's frames are, or "" when they are mixed)."""
    if coin:
        return {} if coin in delisted else {coin: list(trades)}
    out: dict[str, list[Trade]] = {}
    for trade in trades:
        if trade.coin not in delisted:
            out.setdefault(trade.coin, []).append(trade)
    return out
