"""Pure subscription planning for ingest (each subscription once, sharded within the venue's
per-IP limits), error-frame correlation, and the optional channels as the typed messages of
common/book.py (ProtocolError for a payload of the wrong shape).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from hlstream.common.book import Bbo, Book, BookLevel, Fill, Fills
from hlstream.common.config import MAX_WS_CONNECTIONS, MAX_WS_SUBSCRIPTIONS
from hlstream.common.errors import ConfigError, ProtocolError
from hlstream.common.messages import bbo_topic, book_topic, fills_topic
from hlstream.common.timebucket import normalize_ts_ms
from hlstream.services.ingest.core.parse import VENUE_SIDES

TRADES = "trades"
L2BOOK = "l2Book"
BBO = "bbo"
USER_FILLS = "userFills"
REQUEST_MEMORY_S = 30.0
REQUEST_MEMORY_MAX = 2_000
GUESS_WINDOW_S = 5.0


@dataclass(frozen=True, slots=True)
class Sub:
    """One websocket subscription: `kind` is the venue type, `key` the coin or user address."""

    kind: str
    key: str

    @property
    def coin(self) -> str | None:
        return None if self.kind == USER_FILLS else self.key

    def message(self) -> str:
        field = "user" if self.kind == USER_FILLS else "coin"
        request = {"method": "subscribe", "subscription": {"type": self.kind, field: self.key}}
        return json.dumps(request, separators=(",", ":"))


def plan_subscriptions(
    coins: Iterable[str],
    book_coins: Iterable[str] = (),
    bbo_coins: Iterable[str] = (),
    user_fills: Iterable[str] = (),
) -> list[Sub]:
    """Every subscription once: trades per coin, then l2Book, bbo and userFills."""
    subs = [Sub(TRADES, coin) for coin in coins]
    subs += [Sub(L2BOOK, coin) for coin in book_coins]
    subs += [Sub(BBO, coin) for coin in bbo_coins]
    subs += [Sub(USER_FILLS, address.lower()) for address in user_fills]
    return list(dict.fromkeys(subs))


def shard(subs: Sequence[Sub], per_connection: int) -> list[tuple[Sub, ...]]:
    """Split `subs` into as few, evenly filled connections as `per_connection` (>= 1) allows."""
    if len(subs) > MAX_WS_SUBSCRIPTIONS:
        raise ConfigError(
            f"{len(subs)} subscriptions exceed the venue limit of {MAX_WS_SUBSCRIPTIONS} per IP"
        )
    if not subs:
        return []
    count = math.ceil(len(subs) / per_connection)
    if count > MAX_WS_CONNECTIONS:
        raise ConfigError(
            f"{len(subs)} subscriptions at {per_connection} per connection need {count} "
            f"connections, over the venue limit of {MAX_WS_CONNECTIONS}: raise "
            "ws_subscriptions_per_connection"
        )
    size = math.ceil(len(subs) / count)
    return [tuple(subs[i : i + size]) for i in range(0, len(subs), size)]


def unlisted_coins(subs: Iterable[Sub], listed: set[str]) -> list[str]:
    """Coins of `subs` that the exchange no longer lists, in first-seen order."""
    return list(dict.fromkeys(s.key for s in subs if s.coin is not None and s.key not in listed))


def is_early_close(closed_s: float, last_subscribe_s: float | None, window_s: float) -> bool:
    """A close within `window_s` of the last subscribe we sent: maybe a delisted coin."""
    return last_subscribe_s is not None and 0 <= closed_s - last_subscribe_s <= window_s


class RequestLog:
    """Requests sent on one connection recently, to name the one an error frame is about."""

    def __init__(self) -> None:
        self._sent: deque[tuple[float, str]] = deque(maxlen=REQUEST_MEMORY_MAX)

    def record(self, now_s: float, text: str) -> None:
        self._sent.append((now_s, text))
        while self._sent and now_s - self._sent[0][0] > REQUEST_MEMORY_S:
            self._sent.popleft()

    def cause_of(self, error: str, now_s: float) -> tuple[str, bool] | None:
        """(request text, exact) of the request `error` quotes (or every value of whose
        subscription it quotes); else the newest one within GUESS_WINDOW_S as a guess, or None."""
        for _, text in reversed(self._sent):
            if text in error or _quotes_subscription(error, text):
                return text, True
        if self._sent and now_s - self._sent[-1][0] <= GUESS_WINDOW_S:
            return self._sent[-1][1], False
        return None


def _quotes_subscription(error: str, text: str) -> bool:
    sub = json.loads(text).get("subscription")  # `text` is a request we sent: a JSON object
    return bool(sub) and all(f'"{v}"' in error or f"'{v}'" in error for v in sub.values())


def is_already_subscribed(error: str) -> bool:
    """The venue's harmless answer to a repeated subscribe."""
    return error.lower().startswith("already subscribed")


class ChannelMessage(NamedTuple):
    """An optional channel's payload ready for the bus."""

    topic: str
    coin: str | None  # None: a per-user channel
    message: Book | Bbo | Fills


def channel_message(channel: str, data: Any, recv_ms: int) -> ChannelMessage:
    """A DATA_CHANNELS payload as its bus message; ProtocolError if it has the wrong shape."""
    if channel == L2BOOK:
        book = parse_book(data, recv_ms)
        return ChannelMessage(book_topic(book.coin), book.coin, book)
    if channel == BBO:
        bbo = parse_bbo(data, recv_ms)
        return ChannelMessage(bbo_topic(bbo.coin), bbo.coin, bbo)
    if channel == USER_FILLS:
        fills = parse_fills(data, recv_ms)
        return ChannelMessage(fills_topic(fills.user), None, fills)
    raise ProtocolError(f"channel {channel!r} is not one ingest publishes")


def parse_book(data: Any, recv_ms: int) -> Book:
    """An l2Book payload `{coin, time, levels: [bids, asks]}` as a typed Book."""
    if not isinstance(data, dict):
        raise ProtocolError("l2Book data is not an object")
    coin = _coin(data, "l2Book")
    levels = data.get("levels")
    if not isinstance(levels, list) or len(levels) != 2:
        raise ProtocolError("l2Book levels is not [bids, asks]")
    bids, asks = (_levels(side) for side in levels)
    return Book(coin, _time(data, "l2Book"), recv_ms, bids, asks)


def parse_bbo(data: Any, recv_ms: int) -> Bbo:
    """A bbo payload `{coin, time, bbo: [bid|null, ask|null]}` as a typed Bbo."""
    if not isinstance(data, dict):
        raise ProtocolError("bbo data is not an object")
    coin = _coin(data, "bbo")
    pair = data.get("bbo")
    if not isinstance(pair, list) or len(pair) != 2:
        raise ProtocolError("bbo is not [bid, ask]")
    bid, ask = (None if level is None else _level(level) for level in pair)
    return Bbo(coin, _time(data, "bbo"), recv_ms, bid, ask)


def parse_fills(data: Any, recv_ms: int) -> Fills:
    """A userFills payload `{isSnapshot?, user, fills: [WsFill]}` as typed Fills."""
    if not isinstance(data, dict):
        raise ProtocolError("userFills data is not an object")
    user = data.get("user")
    fills = data.get("fills")
    if not isinstance(user, str) or not isinstance(fills, list):
        raise ProtocolError("userFills has no user or fills list")
    return Fills(
        user.lower(), data.get("isSnapshot") is True, recv_ms, tuple(_fill(item) for item in fills)
    )


def _fill(item: Any) -> Fill:
    if not isinstance(item, dict):
        raise ProtocolError("fill is not an object")
    side = VENUE_SIDES.get(item.get("side"))  # type: ignore[arg-type]
    ts_ms = normalize_ts_ms(item.get("time"))
    if side is None or ts_ms is None:
        raise ProtocolError("fill has no usable side or time")
    return Fill(
        coin=_coin(item, "fill"),
        side=side,
        price=_text(item, "px"),
        size=_text(item, "sz"),
        ts_ms=ts_ms,
        tid=_int(item, "tid"),
        oid=_int(item, "oid"),
        hash=str(item.get("hash") or ""),
        fee=str(item.get("fee") or ""),
        fee_token=str(item.get("feeToken") or ""),
        closed_pnl=str(item.get("closedPnl") or ""),
        dir=str(item.get("dir") or ""),
        crossed=item.get("crossed") is True,
        start_position=str(item.get("startPosition") or ""),
    )


def _levels(side: Any) -> tuple[BookLevel, ...]:
    if not isinstance(side, list):
        raise ProtocolError("book side is not a list")
    return tuple(_level(level) for level in side)


def _level(level: Any) -> BookLevel:
    if not isinstance(level, dict):
        raise ProtocolError("book level is not an object")
    orders = level.get("n")
    if not isinstance(orders, int) or isinstance(orders, bool):
        raise ProtocolError("book level has no order count")
    return BookLevel(_text(level, "px"), _text(level, "sz"), orders)


def _coin(data: Mapping[str, object], what: str) -> str:
    coin = data.get("coin")
    if not isinstance(coin, str) or not coin:
        raise ProtocolError(f"{what} has no coin")
    return coin


def _time(data: Mapping[str, object], what: str) -> int:
    ts_ms = normalize_ts_ms(data.get("time"))
    if ts_ms is None:
        raise ProtocolError(f"{what} has no usable time")
    return ts_ms


def _text(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"field {key!r} is not a decimal string")
    return value


def _int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"field {key!r} is not an integer")
    return value
