"""Optional ingest channels as typed values, published as the venue sends them (off by
default; topics in docs/bus.md): order book (`l2Book`), best bid/offer (`bbo`), a user's fills
(`userFills`). Prices, sizes, fees and pnl are decimal strings as the venue quotes them.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from hlstream.common.wire import Kind, Ms


class BookLevel(msgspec.Struct, frozen=True, gc=False):
    price: str
    size: str
    orders: int  # as the venue sends them: checked for type only


class Book(msgspec.Struct, frozen=True, gc=False):
    kind: ClassVar[Kind] = Kind.BOOK
    coin: str
    ts_ms: Ms
    recv_ms: Ms
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]


class Bbo(msgspec.Struct, frozen=True, gc=False):
    kind: ClassVar[Kind] = Kind.BBO
    coin: str
    ts_ms: Ms
    recv_ms: Ms
    bid: BookLevel | None
    ask: BookLevel | None


class Fill(msgspec.Struct, frozen=True, gc=False):
    coin: str
    side: str
    price: str
    size: str
    ts_ms: Ms
    tid: int
    oid: int
    hash: str
    fee: str
    fee_token: str
    closed_pnl: str
    dir: str
    crossed: bool
    start_position: str


class Fills(msgspec.Struct, frozen=True, gc=False):
    kind: ClassVar[Kind] = Kind.FILLS
    user: str
    is_snapshot: bool
    recv_ms: Ms
    fills: tuple[Fill, ...]
