"""Pure core of ingest: classify websocket frames, normalize trades, dedupe, detect gaps.

This is the only module that knows the venue's trade fields (`coin`, `side` "B"/"A", `px`,
`sz`, `time`, `tid`, `hash`); everything downstream sees `common.messages.Trade`.
No IO, no clock, no randomness: the shell passes everything in.

Invariants:
- A trade without a usable time, price, size, side or tid is rejected and counted, never
  stamped with a local clock (DESIGN.md, "Exchange protocol facts"); so is one whose coin
  holds a line break. A hash that is not a one-line string is dropped and the trade kept
  (the hash is not part of its identity): no trade that passes can be refused by the tape.
- `Deduper.admit` never returns a trade whose key (coin, ts_ms, tid) it returned before,
  including across reconnects and, through `to_state`/`from_state`, process restarts.
  Keys are kept in buckets per exchange time (a venue block stamps all its trades with one
  time: one lookup per frame, not per trade) and forgotten a bucket at a time once older
  than `horizon_ms` behind the newest trade of their coin, or when a coin holds more than
  `max_keys_per_coin`, in the order the buckets were opened (the venue's order, nearly time
  order; a heap by time once cost a fifth of ingest's CPU at 20k trades/s per coin); either
  way a per-coin floor moves up to the newest forgotten key, and an unknown trade at or below
  the floor is dropped and counted as `too_old` rather than risk publishing it twice (the
  aggregator would treat it as late anyway). The venue replays only the last ~30 trades,
  so the bounds cost nothing in practice and keep memory flat at any trade rate. Snapshots
  keep only the newest `PERSIST_KEYS_PER_COIN` keys (and the floor) for the same reason.
- `ReplayCheck` reports a `Gap` only when it can prove trades may be missing: the coin had
  trades before, the subscribe replay shares none of them, and the replay starts no earlier
  than the newest of them (at the same millisecond, the venue's block may have been cut on
  both sides: trades of it between ours and the replay's are unknown).

Subscription planning, sharding and the optional channels live in `channels.py`; the
reconnect policy in `reconnect.py`.
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import orjson

from hlstream.common.decimals import all_positive_decimals, is_positive_decimal
from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Gap, Side, Trade
from hlstream.common.timebucket import normalize_ts_ms

PING = '{"method":"ping"}'
DEFAULT_HORIZON_MS = 15 * 60 * 1000
DEFAULT_MAX_KEYS_PER_COIN = 20_000
PERSIST_KEYS_PER_COIN = 2_000
STATE_VERSION = 1
REPLAY_GAP_REASON = "replay_no_overlap"
# Channels we may subscribe to later and pass through untouched.
DATA_CHANNELS = frozenset({"l2Book", "bbo", "userFills", "allMids", "candle", "activeAssetCtx"})
VENUE_SIDES: dict[str, Side] = {"B": "buy", "A": "sell"}  # the venue's side codes
_ZERO = Decimal(0)


class FrameKind(Enum):
    TRADES = "trades"
    PONG = "pong"
    SUBSCRIBED = "subscriptionResponse"
    ERROR = "error"
    DATA = "data"  # a known non-trade channel (l2Book, bbo, ...), passed through as `data`
    UNKNOWN = "unknown"  # a well-formed frame on a channel we do not know


class Frame(msgspec.Struct, frozen=True):
    """One classified websocket frame (a Struct: one per frame on the hot path)."""

    kind: FrameKind
    channel: str
    trades: tuple[Trade, ...] = ()
    rejected: int = 0
    error: str = ""
    data: Any = None
    coin: str = ""  # a trades frame read on the fast path: the one coin of all its trades


def subscribe_message(coin: str, kind: str = "trades") -> str:
    """The JSON text that subscribes to one channel of one coin."""
    body = {"method": "subscribe", "subscription": {"type": kind, "coin": coin}}
    return json.dumps(body, separators=(",", ":"))


_MS_MIN, _MS_MAX = 10**12, 10**15  # an int time in this range is epoch ms, taken as is


class _VenueTrade(msgspec.Struct, gc=False):
    """A WsTrade as the venue sends it (`users` and unknown fields are skipped); the integer
    bounds are checked in C while decoding."""

    coin: str
    side: Literal["B", "A"]
    px: str
    sz: str
    time: Annotated[int, msgspec.Meta(ge=_MS_MIN, le=_MS_MAX)]
    tid: Annotated[int, msgspec.Meta(ge=0)]
    hash: str = ""


class _TradesFrame(msgspec.Struct):
    channel: Literal["trades"]
    data: list[_VenueTrade]


_READ_TRADES = msgspec.json.Decoder(_TradesFrame)


def parse_frame(text: str | bytes) -> Frame:
    """Classify one websocket text frame; raise ProtocolError if it is not JSON of a known shape.

    A trades frame whose every entry is well formed is read typed, in C (msgspec: ~1.8 us for
    5 trades against ~6 us for orjson + per-field checks); any other frame, or one with a
    single odd entry, or of several coins, takes the general path, which rejects entries one
    by one.
    """
    try:
        fast = _READ_TRADES.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _parse_general(text)
    data = fast.data
    if not data:
        return Frame(FrameKind.TRADES, "trades")
    coin = data[0].coin
    if (
        not coin
        or _has_line_break(coin)
        or {item.coin for item in data} != {coin}
        or not all_positive_decimals([item.px for item in data] + [item.sz for item in data])
        or _has_line_break("".join([item.hash for item in data]))
    ):
        return _parse_general(text)  # rejects the odd entries one by one
    sides = VENUE_SIDES
    trades = tuple(
        [
            Trade(coin, sides[item.side], item.px, item.sz, item.time, item.tid, item.hash)
            for item in data
        ]
    )
    return Frame(FrameKind.TRADES, "trades", trades, coin=coin)


def _parse_general(text: str | bytes) -> Frame:
    try:
        obj = orjson.loads(text)  # ~4x the stdlib's speed on trades frames (bench/results)
    except orjson.JSONDecodeError:
        try:  # orjson refuses what the stdlib takes (integers beyond 64 bits): ask it too
            obj = json.loads(text)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise ProtocolError("frame is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"frame is a JSON {type(obj).__name__}, not an object")
    channel = obj.get("channel")
    if not isinstance(channel, str):
        raise ProtocolError("frame has no channel")
    data = obj.get("data")
    if channel == "trades":
        if not isinstance(data, list):
            raise ProtocolError("trades frame data is not a list")
        trades: list[Trade] = []
        for item in data:
            trade = parse_trade(item)
            if trade is not None:
                trades.append(trade)
        return Frame(FrameKind.TRADES, channel, tuple(trades), rejected=len(data) - len(trades))
    if channel == "pong":
        return Frame(FrameKind.PONG, channel)
    if channel == "subscriptionResponse":
        return Frame(FrameKind.SUBSCRIBED, channel, data=data)
    if channel == "error":
        text_data = data if isinstance(data, str) else json.dumps(data)
        return Frame(FrameKind.ERROR, channel, error=text_data)
    if channel in DATA_CHANNELS:
        return Frame(FrameKind.DATA, channel, data=data)
    return Frame(FrameKind.UNKNOWN, channel, data=data)


def parse_trade(item: object) -> Trade | None:
    """Map one venue WsTrade to a Trade; None if any identity or value field is unusable."""
    if not isinstance(item, dict):
        return None
    coin = item.get("coin")
    side = item.get("side")
    px = item.get("px")
    sz = item.get("sz")
    tid = item.get("tid")
    if (
        not isinstance(coin, str)
        or not coin
        or _has_line_break(coin)
        or not isinstance(side, str)
        or side not in VENUE_SIDES
    ):
        return None
    if not isinstance(tid, int) or isinstance(tid, bool) or tid < 0:
        return None
    if not is_positive_decimal(px) or not is_positive_decimal(sz):
        return None
    ts_ms = normalize_ts_ms(item.get("time"))
    if ts_ms is None:
        return None
    tx_hash = item.get("hash")
    return Trade(
        coin=coin,
        side=VENUE_SIDES[side],
        price=str(px),
        size=str(sz),
        ts_ms=ts_ms,
        tid=tid,
        hash=tx_hash if isinstance(tx_hash, str) and not _has_line_break(tx_hash) else "",
    )


def _has_line_break(text: str) -> bool:
    return "\n" in text or "\r" in text


@dataclass
class _CoinKeys:
    """Keys seen for one coin, bucketed by exchange time: the venue stamps every trade of a
    block with one time, so one dict lookup finds a frame's bucket and eviction forgets a
    bucket at a time. `order` holds the bucket times in the order they were opened."""

    buckets: dict[int, set[int]] = field(default_factory=dict)  # ts_ms -> tids
    order: deque[int] = field(default_factory=deque)
    count: int = 0  # keys over all buckets
    newest_ms: int | None = None
    floor_ms: int | None = None  # newest forgotten key: unknown trades at or below are too old

    def add(self, ts_ms: int, tid: int) -> None:
        tids = self.buckets.get(ts_ms)
        if tids is None:
            self.buckets[ts_ms] = {tid}
            self.order.append(ts_ms)
        else:
            tids.add(tid)
        self.count += 1

    def pairs(self) -> list[tuple[int, int]]:
        return [(ts_ms, tid) for ts_ms, tids in self.buckets.items() for tid in tids]


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
        self.too_old = 0  # trades dropped because they were older than the horizon
        self.evicted_by_cap = 0  # keys forgotten early because a coin hit max_keys_per_coin

    def newest_ms(self, coin: str) -> int | None:
        """Exchange time of the newest trade admitted for `coin`, if any."""
        seen = self._coins.get(coin)
        return None if seen is None else seen.newest_ms

    def newest_by_coin(self) -> dict[str, int]:
        """Newest admitted exchange time per coin."""
        return {c: s.newest_ms for c, s in self._coins.items() if s.newest_ms is not None}

    def activity_by_coin(self) -> dict[str, tuple[int, int]]:
        """Per coin: distinct trade times held (up to the horizon before its newest) and the
        span in ms from the first of them opened to the newest (O(1) per coin)."""
        return {
            c: (len(s.order), max(0, s.newest_ms - s.order[0]))
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
        """Return (trades never seen before, in input order; number of duplicates dropped).

        Trades older than the horizon behind their coin's newest are dropped too, but counted
        in `self.too_old`, not as duplicates.
        """
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
                self._evict(seen)
        return fresh, duplicates

    def _evict(self, seen: _CoinKeys) -> None:
        assert seen.newest_ms is not None  # callers skip a coin that never admitted a trade
        cutoff = seen.newest_ms - self.horizon_ms
        order, cap = seen.order, self.max_keys_per_coin
        if not order or (order[0] >= cutoff and seen.count <= cap):
            return  # nothing to forget (the common case)
        floor = seen.floor_ms
        buckets = seen.buckets
        while order and (order[0] < cutoff or seen.count > cap):
            ts_ms = order.popleft()
            forgotten = len(buckets.pop(ts_ms))
            seen.count -= forgotten
            if ts_ms >= cutoff:
                self.evicted_by_cap += forgotten
            floor = ts_ms if floor is None else max(floor, ts_ms)
        seen.floor_ms = floor

    def to_state(self) -> dict[str, Any]:
        """A plain, msgpack-able snapshot: keys flattened as [ts, tid, ts, tid, ...] per coin."""
        coins: dict[str, Any] = {}
        for coin, seen in self._coins.items():
            flat: list[int] = []
            pairs = seen.pairs()
            kept = heapq.nlargest(PERSIST_KEYS_PER_COIN, pairs)
            floor = seen.floor_ms
            if len(kept) < len(pairs):
                dropped_newest = max(key for key in pairs if key < kept[-1])
                floor = max(floor or dropped_newest[0], dropped_newest[0])
            for ts_ms, tid in kept:
                flat.append(ts_ms)
                flat.append(tid)
            coins[coin] = {"newest_ms": seen.newest_ms, "floor_ms": floor, "keys": flat}
        return {"v": STATE_VERSION, "horizon_ms": self.horizon_ms, "coins": coins}

    @classmethod
    def from_state(
        cls,
        state: object,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        max_keys_per_coin: int = DEFAULT_MAX_KEYS_PER_COIN,
    ) -> Deduper:
        """Rebuild from `to_state` output; raise ProtocolError if the snapshot is malformed."""
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
            raise ProtocolError("dedupe state has an unknown version")
        coins = state.get("coins")
        if not isinstance(coins, dict):
            raise ProtocolError("dedupe state has no coin map")
        deduper = cls(horizon_ms=horizon_ms, max_keys_per_coin=max_keys_per_coin)
        for coin, entry in coins.items():
            if not isinstance(coin, str) or not isinstance(entry, dict):
                raise ProtocolError("dedupe state coin entry is malformed")
            newest = entry.get("newest_ms")
            flat = entry.get("keys")
            if not _is_int(newest) and newest is not None:
                raise ProtocolError(f"dedupe state newest_ms of {coin!r} is not an int")
            if not isinstance(flat, list) or len(flat) % 2 or not all(_is_int(v) for v in flat):
                raise ProtocolError(f"dedupe state keys of {coin!r} are malformed")
            floor = entry.get("floor_ms")
            if not _is_int(floor) and floor is not None:
                raise ProtocolError(f"dedupe state floor_ms of {coin!r} is not an int")
            seen = _CoinKeys(newest_ms=newest, floor_ms=floor)
            for ts_ms, tid in sorted(set(zip(flat[0::2], flat[1::2], strict=True))):
                seen.add(ts_ms, tid)
            if seen.order and seen.newest_ms is None:
                raise ProtocolError(f"dedupe state of {coin!r} has keys but no newest_ms")
            deduper._coins[coin] = seen
            if seen.newest_ms is not None:
                deduper._evict(seen)
        return deduper


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def replay_gap(
    coin: str, replay: Sequence[Trade], known: int, last_ts_ms: int | None
) -> Gap | None:
    """The Gap a subscribe replay proves, if any.

    Args:
        replay: the valid trades of the first trades frame for `coin` after a (re)connect.
        known: how many of them had been admitted before this frame.
        last_ts_ms: the newest trade time seen for `coin` before this frame (None: never).
    """
    if last_ts_ms is None or not replay or known > 0:
        return None
    oldest_ms = min(trade.ts_ms for trade in replay)
    if oldest_ms < last_ts_ms:
        return None
    return Gap(coin=coin, from_ms=last_ts_ms, to_ms=oldest_ms, reason=REPLAY_GAP_REASON)


class ReplayCheck:
    """Tracks which coins still await their subscribe replay on the current connection."""

    def __init__(self) -> None:
        self._pending: set[str] = set()

    def on_connect(self, coins: Iterable[str]) -> None:
        """A (re)connect subscribing `coins`: the next trades frame of each is its replay.

        Coins of other connections keep their state: each connection reports its own shard.
        """
        self._pending.update(coins)

    def is_pending(self, coin: str) -> bool:
        return coin in self._pending

    def any_pending(self) -> bool:
        """True while some subscribed coin's replay has not arrived yet."""
        return bool(self._pending)

    def settle(self) -> None:
        """Give up waiting for replays (a coin that never traded sends none)."""
        self._pending.clear()

    def check(
        self, coin: str, trades: Sequence[Trade], known: int, last_ts_ms: int | None
    ) -> Gap | None:
        """Feed a trades frame of `coin`; a Gap if it is the replay and proves missed trades."""
        if coin not in self._pending:
            return None
        self._pending.discard(coin)
        return replay_gap(coin, trades, known, last_ts_ms)


class Admission(NamedTuple):
    """What one coin's trades frame yields: trades to publish, counts, and a proven gap."""

    fresh: list[Trade]
    duplicates: int
    too_old: int
    gap: Gap | None


def admit_batch(deduper: Deduper, replay: ReplayCheck, coin: str, batch: list[Trade]) -> Admission:
    """Dedupe one coin's trades frame and judge it as a subscribe replay.

    The newest time and the known-key count are read BEFORE `admit`, which changes both: read
    after, every replay would look fully known and a real gap would never be reported.
    """
    last_ms = deduper.newest_ms(coin)
    known = deduper.count_known(batch) if replay.is_pending(coin) else 0
    too_old_before = deduper.too_old
    fresh, duplicates = deduper.admit(batch)
    gap = replay.check(coin, batch, known, last_ms)
    return Admission(fresh, duplicates, deduper.too_old - too_old_before, gap)
