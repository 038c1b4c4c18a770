"""Typed messages on the hlstream bus and their msgpack wire format (schema version 1).

Every frame is `[topic, payload]`. The topic is ASCII, dot-separated, with the coin last
(spelled exactly as the venue spells it) and terminated by `|`, a character no coin name
may contain, so a ZeroMQ prefix subscription to `trade.ETH|` never matches `trade.ETHFI|`:

    trade.{coin}|            batch of trades for one coin, in exchange order
    gap.{coin}|              ingest may have missed trades of `coin` in [from_ms, to_ms]
    status.{service}|        heartbeat of one stage, once a second
    bar.{interval}.{coin}|   a finished bar
    late.{coin}|             a trade that arrived after its window was closed

Optional ingest channels (off by default; settings `book_coins`, `bbo_coins`, `user_fills`),
published as the venue sends them, not deduped, resubscribed after every reconnect:

    book.{coin}|             type "book": coin, ts_ms, recv_ms, bids, asks; each side a list
                             of levels {price, size, orders} (strings, strings, int), best first
    bbo.{coin}|              type "bbo": coin, ts_ms, recv_ms, bid, ask (a level, or nil)
    fills.{address}|         type "fills": user (lowercase 0x address), is_snapshot, recv_ms,
                             fills: list of {coin, side ("buy"/"sell"), price, size, ts_ms,
                             tid, oid, hash, fee, fee_token, closed_pnl, dir, crossed,
                             start_position}

The payload is a msgpack map with `v` (schema version), `type`, `session` (random hex id,
new on every process start), `seq` (per topic, +1 per message: a jump means the subscriber
lost messages) and the type's fields. Prices and sizes are decimal strings; times are int
epoch milliseconds (UTC). Decoding is strict: anything else raises ProtocolError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from hlstream.common.decimals import parse_decimal
from hlstream.common.errors import ProtocolError

SCHEMA_VERSION = 1
TOPIC_END = "|"
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_TRADES_PER_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Trade:
    """One exchange trade; identity is (coin, ts_ms, tid)."""

    coin: str
    is_buy: bool
    price: str
    size: str
    ts_ms: int
    tid: int
    hash: str


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV window. `complete` is False when the producer did not see the whole window."""

    coin: str
    interval: str
    start_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int
    complete: bool
    source: str = "ws"


@dataclass(frozen=True, slots=True)
class Gap:
    """Trades of `coin` between from_ms and to_ms (inclusive) may be missing."""

    coin: str
    from_ms: int
    to_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """Publisher identity stamped on every message."""

    session: str
    seq: int


def trade_topic(coin: str) -> str:
    return f"trade.{coin}{TOPIC_END}"


def gap_topic(coin: str) -> str:
    return f"gap.{coin}{TOPIC_END}"


def status_topic(service: str) -> str:
    return f"status.{service}{TOPIC_END}"


def bar_topic(interval: str, coin: str) -> str:
    return f"bar.{interval}.{coin}{TOPIC_END}"


def late_topic(coin: str) -> str:
    return f"late.{coin}{TOPIC_END}"


def book_topic(coin: str) -> str:
    return f"book.{coin}{TOPIC_END}"


def bbo_topic(coin: str) -> str:
    return f"bbo.{coin}{TOPIC_END}"


def fills_topic(address: str) -> str:
    return f"fills.{address.lower()}{TOPIC_END}"


def trade_to_wire(trade: Trade) -> dict[str, Any]:
    return {
        "coin": trade.coin,
        "side": "buy" if trade.is_buy else "sell",
        "price": trade.price,
        "size": trade.size,
        "ts_ms": trade.ts_ms,
        "tid": trade.tid,
        "hash": trade.hash,
    }


def bar_to_wire(bar: Bar) -> dict[str, Any]:
    return {
        "coin": bar.coin,
        "interval": bar.interval,
        "start_ms": bar.start_ms,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "trades": bar.trades,
        "complete": bar.complete,
        "source": bar.source,
    }


def gap_to_wire(gap: Gap) -> dict[str, Any]:
    return {"coin": gap.coin, "from_ms": gap.from_ms, "to_ms": gap.to_ms, "reason": gap.reason}


_packer = msgpack.Packer(use_bin_type=True)


def encode(kind: str, envelope: Envelope, body: dict[str, Any]) -> bytes:
    """Pack one payload: envelope + type + body."""
    payload = {"v": SCHEMA_VERSION, "type": kind, "session": envelope.session, "seq": envelope.seq}
    payload.update(body)
    packed: bytes = _packer.pack(payload)
    return packed


def decode(payload: bytes) -> dict[str, Any]:
    """Unpack and check the envelope of one payload; raise ProtocolError if malformed."""
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        data = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            max_array_len=MAX_TRADES_PER_BATCH,
            max_map_len=256,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(f"undecodable msgpack: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ProtocolError("payload is not a map")
    if data.get("v") != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported schema version {data.get('v')!r}")
    _need(data, "type", str)
    _need(data, "session", str)
    _need(data, "seq", int)
    return data


def _need(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"field {key!r} missing or not {kind.__name__}")
    return value


def trade_from_wire(data: Any) -> Trade:
    """Build a Trade from its wire map; raise ProtocolError if any field is wrong."""
    if not isinstance(data, dict):
        raise ProtocolError("trade is not a map")
    side = _need(data, "side", str)
    if side not in {"buy", "sell"}:
        raise ProtocolError(f"trade side {side!r} is not buy or sell")
    price = _need(data, "price", str)
    size = _need(data, "size", str)
    for name, text in (("price", price), ("size", size)):
        value = parse_decimal(text)
        if value is None or value <= 0:
            raise ProtocolError(f"trade {name} {text[:40]!r} is not a positive decimal")
    return Trade(
        coin=_need(data, "coin", str),
        is_buy=side == "buy",
        price=price,
        size=size,
        ts_ms=_need(data, "ts_ms", int),
        tid=_need(data, "tid", int),
        hash=_need(data, "hash", str),
    )


def trades_from_payload(data: dict[str, Any]) -> list[Trade]:
    """The trades of a decoded `trades` payload."""
    batch = data.get("trades")
    if not isinstance(batch, list):
        raise ProtocolError("trades payload has no trade list")
    return [trade_from_wire(item) for item in batch]


def bar_from_wire(data: dict[str, Any]) -> Bar:
    """Build a Bar from its wire map; raise ProtocolError if any field is wrong."""
    complete = data.get("complete")
    if not isinstance(complete, bool):
        raise ProtocolError("field 'complete' missing or not bool")
    return Bar(
        coin=_need(data, "coin", str),
        interval=_need(data, "interval", str),
        start_ms=_need(data, "start_ms", int),
        open=_need(data, "open", str),
        high=_need(data, "high", str),
        low=_need(data, "low", str),
        close=_need(data, "close", str),
        volume=_need(data, "volume", str),
        trades=_need(data, "trades", int),
        complete=complete,
        source=_need(data, "source", str),
    )


def gap_from_wire(data: dict[str, Any]) -> Gap:
    """Build a Gap from its wire map."""
    return Gap(
        coin=_need(data, "coin", str),
        from_ms=_need(data, "from_ms", int),
        to_ms=_need(data, "to_ms", int),
        reason=_need(data, "reason", str),
    )
