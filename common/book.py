"""Optional ingest channels as typed values: order book (`l2Book`), best bid/offer (`bbo`)
and a user's fills (`userFills`), published as the venue sends them (off by default).

    book.{coin}|      Book: coin, ts_ms, recv_ms, bids, asks; levels {price, size, orders}
    bbo.{coin}|       Bbo: coin, ts_ms, recv_ms, bid, ask (a level, or nil)
    fills.{address}|  Fills: user (lowercase 0x address), is_snapshot, recv_ms, fills: list
                      of {coin, side ("buy"/"sell"), price, size, ts_ms, tid, oid, hash, fee,
                      fee_token, closed_pnl, dir, crossed, start_position}

Prices, sizes, fees and pnl are decimal strings as the venue quotes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hlstream.common.errors import ProtocolError
from hlstream.common.wire import need, need_list


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: str
    size: str
    orders: int


@dataclass(frozen=True, slots=True)
class Book:
    coin: str
    ts_ms: int
    recv_ms: int
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]


@dataclass(frozen=True, slots=True)
class Bbo:
    coin: str
    ts_ms: int
    recv_ms: int
    bid: BookLevel | None
    ask: BookLevel | None


@dataclass(frozen=True, slots=True)
class Fill:
    coin: str
    side: str
    price: str
    size: str
    ts_ms: int
    tid: int
    oid: int
    hash: str
    fee: str
    fee_token: str
    closed_pnl: str
    dir: str
    crossed: bool
    start_position: str


@dataclass(frozen=True, slots=True)
class Fills:
    user: str
    is_snapshot: bool
    recv_ms: int
    fills: tuple[Fill, ...]


def level_to_wire(level: BookLevel | None) -> dict[str, Any] | None:
    return None if level is None else asdict(level)


def level_from_wire(data: Any) -> BookLevel:
    return BookLevel(need(data, "price", str), need(data, "size", str), need(data, "orders", int))


def book_to_wire(book: Book) -> dict[str, Any]:
    return {
        "coin": book.coin,
        "ts_ms": book.ts_ms,
        "recv_ms": book.recv_ms,
        "bids": [asdict(level) for level in book.bids],
        "asks": [asdict(level) for level in book.asks],
    }


def book_from_wire(data: Any) -> Book:
    return Book(
        coin=need(data, "coin", str),
        ts_ms=need(data, "ts_ms", int),
        recv_ms=need(data, "recv_ms", int),
        bids=tuple(level_from_wire(level) for level in need_list(data, "bids")),
        asks=tuple(level_from_wire(level) for level in need_list(data, "asks")),
    )


def bbo_to_wire(bbo: Bbo) -> dict[str, Any]:
    return {
        "coin": bbo.coin,
        "ts_ms": bbo.ts_ms,
        "recv_ms": bbo.recv_ms,
        "bid": level_to_wire(bbo.bid),
        "ask": level_to_wire(bbo.ask),
    }


def bbo_from_wire(data: Any) -> Bbo:
    bid, ask = data.get("bid"), data.get("ask")
    return Bbo(
        coin=need(data, "coin", str),
        ts_ms=need(data, "ts_ms", int),
        recv_ms=need(data, "recv_ms", int),
        bid=None if bid is None else level_from_wire(bid),
        ask=None if ask is None else level_from_wire(ask),
    )


def fills_to_wire(fills: Fills) -> dict[str, Any]:
    return {
        "user": fills.user,
        "is_snapshot": fills.is_snapshot,
        "recv_ms": fills.recv_ms,
        "fills": [asdict(fill) for fill in fills.fills],
    }


def fills_from_wire(data: Any) -> Fills:
    items = need_list(data, "fills")
    if not all(isinstance(item, dict) for item in items):
        raise ProtocolError("fills holds a non-map")
    return Fills(
        user=need(data, "user", str),
        is_snapshot=need(data, "is_snapshot", bool),
        recv_ms=need(data, "recv_ms", int),
        fills=tuple(_fill_from_wire(item) for item in items),
    )


def _fill_from_wire(data: dict[str, Any]) -> Fill:
    return Fill(
        coin=need(data, "coin", str),
        side=need(data, "side", str),
        price=need(data, "price", str),
        size=need(data, "size", str),
        ts_ms=need(data, "ts_ms", int),
        tid=need(data, "tid", int),
        oid=need(data, "oid", int),
        hash=need(data, "hash", str),
        fee=need(data, "fee", str),
        fee_token=need(data, "fee_token", str),
        closed_pnl=need(data, "closed_pnl", str),
        dir=need(data, "dir", str),
        crossed=need(data, "crossed", bool),
        start_position=need(data, "start_position", str),
    )
