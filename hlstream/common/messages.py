"""Typed messages on the hlstream bus (docs/bus.md); the codec and envelope are common/wire.py.

A frame is `[topic, payload]`; the topic is dot-separated, the coin last as the venue spells
it, ended by `|` (no coin contains it), so a prefix subscription to `trade.ETH|` never matches
`trade.ETHFI|`. A *gap* is venue data ingest may have missed (`Gap`); a *loss* is bus
messages a subscriber missed (a jump in `seq`, common/sequence.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from hlstream.common.addresses import Users, all_addresses
from hlstream.common.book import Bbo, Book, Fills
from hlstream.common.decimals import all_positive_decimals, is_positive_decimal
from hlstream.common.errors import ProtocolError
from hlstream.common.status import StageStatus
from hlstream.common.wire import (
    MAX_FRAME_BYTES,
    MAX_TRADES_PER_BATCH,
    SCHEMA_VERSION,
    Count,
    Decoder,
    Envelope,
    Kind,
    Ms,
    encode_message,
)

__all__ = ["MAX_FRAME_BYTES", "SCHEMA_VERSION", "Decoder", "Envelope", "Kind", "encode_message"]

TOPIC_END = "|"

Side = Literal["buy", "sell"]


class Trade(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One exchange trade; identity is (coin, ts_ms, tid). Prices, sizes and addresses are
    checked per message, a column at a time (`check_trades`). `users`: (buyer, seller)."""

    coin: str
    side: Side
    price: str
    size: str
    ts_ms: Ms
    tid: Count
    hash: str
    users: Users | None = None


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One OHLCV window. `complete` is False when the producer did not see the whole window;
    `source` says whose trades made it (`ws`, `rest`, `mixed`, `fill`)."""

    kind: ClassVar[Kind] = Kind.BAR
    coin: str
    interval: str
    start_ms: Ms
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: Count
    complete: bool
    source: str


class TapeSpan(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Bytes [start, end) of the coin's tape segment of UTC `day`; on the wire a list."""

    day: str
    start: Count
    end: Count

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("tape span is not 0 <= start <= end")


class Gap(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Trades of `coin` between from_ms and to_ms (inclusive) may be missing."""

    kind: ClassVar[Kind] = Kind.GAP
    coin: str
    from_ms: Ms
    to_ms: Ms
    reason: str
    tape: TapeSpan | None = None


def _topic(kind: str) -> Callable[[str], str]:
    """The topic maker of one kind of message about one name (a coin, a service)."""
    return lambda name: f"{kind}.{name}{TOPIC_END}"


trade_topic = _topic("trade")
gap_topic = _topic("gap")
status_topic = _topic("status")
late_topic = _topic("late")
book_topic = _topic("book")
bbo_topic = _topic("bbo")


def bar_topic(interval: str, coin: str) -> str:
    return f"bar.{interval}.{coin}{TOPIC_END}"


def fills_topic(address: str) -> str:
    return f"fills.{address.lower()}{TOPIC_END}"


def has_plain_decimals(trades: Sequence[Trade]) -> bool:
    """Every price and size is a plain positive decimal string (one regex for them all)."""
    return all_positive_decimals([t.price for t in trades] + [t.size for t in trades])


def has_plain_users(trades: Sequence[Trade]) -> bool:
    """Every trade's `users`, where set, is two addresses (one check for them all)."""
    return all_addresses([a for t in trades if t.users is not None for a in t.users])


def check_trades(trades: Sequence[Trade]) -> None:
    """ProtocolError unless every price and size is a plain positive decimal string and
    every `users` is two addresses."""
    if not has_plain_users(trades):
        raise ProtocolError("trade users are not two 0x addresses")
    if has_plain_decimals(trades):
        return
    for trade in trades:  # name the first bad one
        for name, text in (("price", trade.price), ("size", trade.size)):
            if not is_positive_decimal(text):
                raise ProtocolError(f"trade {name} {str(text)[:40]!r} is not a positive decimal")


class TradeBatch(msgspec.Struct, frozen=True):
    """Trades of one coin that ingest admitted together, in exchange order."""

    kind: ClassVar[Kind] = Kind.TRADES
    coin: str
    recv_ms: Ms
    trades: Annotated[tuple[Trade, ...], Meta(max_length=MAX_TRADES_PER_BATCH)]
    tape: TapeSpan | None = None
    recv_us: Count = 0  # when the frame came off the socket, epoch µs (0: unknown)
    covered_ms: Ms = 0  # ingest's word: everything it received before this is published

    def check_wire(self) -> None:
        """On decode only: ingest built its trades from checked venue decimals and addresses."""
        check_trades(self.trades)


class LateTrade(msgspec.Struct, frozen=True, gc=False):
    """A trade that arrived after its `interval` window starting `start_ms` was closed."""

    kind: ClassVar[Kind] = Kind.LATE
    interval: str
    start_ms: Ms
    trade: Trade

    def check_wire(self) -> None:
        check_trades((self.trade,))


NOTICE_SERIES = "!"  # a notice travels on (coin, interval + "!") in the outbox and its ack


class Inexact(msgspec.Struct, frozen=True, gc=False):
    """Aggregator -> writer: windows of (coin, interval) starting in [first_ms, last_ms] were
    emitted as complete before a gap over them was known, so their rows may miss trades. The
    writer journals them (common/inexact_io.py) and acks with
    BarAck(coin, interval + NOTICE_SERIES, last_ms)."""

    kind: ClassVar[Kind] = Kind.INEXACT
    coin: str
    interval: str
    first_ms: Ms
    last_ms: Ms
    reason: str

    def __post_init__(self) -> None:
        if self.last_ms < self.first_ms:
            raise ValueError("inexact notice: last_ms before first_ms")


class BarAck(msgspec.Struct, frozen=True, gc=False):
    """The writer's word that the bar (coin, interval, start_ms) is fsynced on disk."""

    kind: ClassVar[Kind] = Kind.ACK
    coin: str
    interval: str
    start_ms: Ms


def ack_of(item: Bar | Inexact) -> BarAck:
    """The ack that settles a bar, or a notice (on its own series, see NOTICE_SERIES)."""
    if isinstance(item, Inexact):
        return BarAck(item.coin, item.interval + NOTICE_SERIES, item.last_ms)
    return BarAck(item.coin, item.interval, item.start_ms)


Message = TradeBatch | Gap | StageStatus | Bar | LateTrade | BarAck | Book | Bbo | Fills | Inexact
