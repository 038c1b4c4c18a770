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
lost messages) and the type's fields (common/wire.py). Prices and sizes are decimal strings;
times are int epoch milliseconds (UTC). Decoding is strict: anything else raises
ProtocolError.

Every message is a typed, frozen value; `encode_message` / `decode_message` are the one
codec for all of them (trades, gap, status, bar, late, ack, book, bbo, fills). Two words
are kept apart: a *gap* is venue data ingest may have missed (`Gap`, topic `gap.`); a
*loss* is bus messages a subscriber missed (a jump in `seq`, common/sequence.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from hlstream.common.book import (
    Bbo,
    Book,
    Fills,
    bbo_from_wire,
    bbo_to_wire,
    book_from_wire,
    book_to_wire,
    fills_from_wire,
    fills_to_wire,
)
from hlstream.common.decimals import all_positive_decimals, is_positive_decimal
from hlstream.common.errors import ProtocolError
from hlstream.common.status import StageStatus, status_from_wire, status_to_wire
from hlstream.common.wire import (
    MAX_FRAME_BYTES,
    MAX_TRADES_PER_BATCH,
    SCHEMA_VERSION,
    Envelope,
    Kind,
    as_int,
    decode,
    encode,
    need,
)

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_TRADES_PER_BATCH",
    "SCHEMA_VERSION",
    "TOPIC_END",
    "Envelope",
    "Kind",
    "decode",
    "encode",
]

TOPIC_END = "|"


Side = Literal["buy", "sell"]


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One exchange trade; identity is (coin, ts_ms, tid). Its fields are its wire map: a
    msgspec Struct, so the bus codec reads and writes trades in C (issue 12: the Python
    per-field decode was a third of the aggregator's time)."""

    coin: str
    side: Side
    price: str
    size: str
    ts_ms: int
    tid: int
    hash: str

    @property
    def is_buy(self) -> bool:
        return self.side == "buy"


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


class TapeSpan(msgspec.Struct, frozen=True, gc=False):
    """Where a message's records lie on the trade tape: bytes [start, end) of the coin's
    segment of UTC `day` (common/tape.py). The aggregator uses it to skip what it already
    applied from the tape and to read from the tape what the bus lost."""

    day: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Trades of `coin` between from_ms and to_ms (inclusive) may be missing."""

    coin: str
    from_ms: int
    to_ms: int
    reason: str
    tape: TapeSpan | None = None


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
    return msgspec.structs.asdict(trade)


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
    body = {"coin": gap.coin, "from_ms": gap.from_ms, "to_ms": gap.to_ms, "reason": gap.reason}
    return _with_span(body, gap.tape)


def _with_span(body: dict[str, Any], span: TapeSpan | None) -> dict[str, Any]:
    if span is not None:
        body["tape"] = [span.day, span.start, span.end]
    return body


def _span_from_wire(data: dict[str, Any]) -> TapeSpan | None:
    raw = data.get("tape")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 3 or not isinstance(raw[0], str):
        raise ProtocolError("field 'tape' is not [day, start, end]")
    start, end = as_int(raw[1], "tape start"), as_int(raw[2], "tape end")
    if not 0 <= start <= end:
        raise ProtocolError("tape span is not 0 <= start <= end")
    return TapeSpan(raw[0], start, end)


def trade_from_wire(data: Any) -> Trade:
    """Build a Trade from its wire map; raise ProtocolError if any field is wrong."""
    if not isinstance(data, dict):
        raise ProtocolError("trade is not a map")
    try:
        trade = msgspec.convert(data, Trade, strict=True)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"trade: {exc}") from None
    check_decimals((trade,))
    return trade


def has_plain_decimals(trades: Sequence[Trade]) -> bool:
    """Every price and size is a plain positive decimal string (one regex for them all)."""
    return all_positive_decimals([t.price for t in trades] + [t.size for t in trades])


def check_decimals(trades: Sequence[Trade]) -> None:
    """ProtocolError unless every price and size is a plain positive decimal string."""
    if has_plain_decimals(trades):
        return
    for trade in trades:  # name the first bad one
        for name, text in (("price", trade.price), ("size", trade.size)):
            if not is_positive_decimal(text):
                raise ProtocolError(f"trade {name} {str(text)[:40]!r} is not a positive decimal")


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
        coin=need(data, "coin", str),
        interval=need(data, "interval", str),
        start_ms=need(data, "start_ms", int),
        open=need(data, "open", str),
        high=need(data, "high", str),
        low=need(data, "low", str),
        close=need(data, "close", str),
        volume=need(data, "volume", str),
        trades=need(data, "trades", int),
        complete=complete,
        source=need(data, "source", str),
    )


def gap_from_wire(data: dict[str, Any]) -> Gap:
    """Build a Gap from its wire map."""
    return Gap(
        coin=need(data, "coin", str),
        from_ms=need(data, "from_ms", int),
        to_ms=need(data, "to_ms", int),
        reason=need(data, "reason", str),
        tape=_span_from_wire(data),
    )


class TradeBatch(msgspec.Struct, frozen=True):
    """Trades of one coin that ingest admitted together, in exchange order (a Struct: built
    once per frame on the hot path, where a frozen dataclass costs several times more)."""

    coin: str
    recv_ms: int
    trades: tuple[Trade, ...]
    tape: TapeSpan | None = None
    recv_us: int = 0  # when the frame came off the socket, epoch µs (0: unknown)
    covered_ms: int = 0  # ingest's word: everything it received before this is published


@dataclass(frozen=True, slots=True)
class LateTrade:
    """A trade that arrived after its `interval` window starting `start_ms` was closed."""

    interval: str
    start_ms: int
    trade: Trade


NOTICE_SERIES = "!"  # a notice travels on (coin, interval + "!") in the outbox and its ack


@dataclass(frozen=True, slots=True)
class Inexact:
    """Aggregator -> writer: windows of (coin, interval) starting in [first_ms, last_ms] were
    emitted as complete before a gap overlapping them was known (`gap_after_close`), so their
    rows may miss trades. The writer records them (common/inexact_io.py) and acks the notice
    as BarAck(coin, interval + NOTICE_SERIES, last_ms)."""

    coin: str
    interval: str
    first_ms: int
    last_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class BarAck:
    """The writer's word that the bar (coin, interval, start_ms) is fsynced on disk."""

    coin: str
    interval: str
    start_ms: int


def _late_to_wire(late: LateTrade) -> dict[str, Any]:
    return {
        "interval": late.interval,
        "start_ms": late.start_ms,
        "trade": trade_to_wire(late.trade),
    }


def _late_from_wire(data: dict[str, Any]) -> LateTrade:
    return LateTrade(
        need(data, "interval", str), need(data, "start_ms", int), trade_from_wire(data.get("trade"))
    )


def _ack_to_wire(ack: BarAck) -> dict[str, Any]:
    return {"coin": ack.coin, "interval": ack.interval, "start_ms": ack.start_ms}


def _ack_from_wire(data: dict[str, Any]) -> BarAck:
    return BarAck(
        need(data, "coin", str),
        need(data, "interval", str),
        as_int(data.get("start_ms"), "field 'start_ms'"),
    )


def inexact_to_wire(notice: Inexact) -> dict[str, Any]:
    return {
        "coin": notice.coin,
        "interval": notice.interval,
        "first_ms": notice.first_ms,
        "last_ms": notice.last_ms,
        "reason": notice.reason,
    }


def inexact_from_wire(data: dict[str, Any]) -> Inexact:
    notice = Inexact(
        need(data, "coin", str),
        need(data, "interval", str),
        need(data, "first_ms", int),
        need(data, "last_ms", int),
        need(data, "reason", str),
    )
    if notice.last_ms < notice.first_ms:
        raise ProtocolError("inexact notice: last_ms before first_ms")
    return notice


Message = TradeBatch | Gap | StageStatus | Bar | LateTrade | BarAck | Book | Bbo | Fills | Inexact

# Trades messages have their own codec (`_encode_trades`, `_decode_trades`): one Struct.
_ENCODERS: dict[type, tuple[Kind, Callable[[Any], dict[str, Any]]]] = {
    Gap: (Kind.GAP, gap_to_wire),
    StageStatus: (Kind.STATUS, status_to_wire),
    Bar: (Kind.BAR, bar_to_wire),
    LateTrade: (Kind.LATE, _late_to_wire),
    BarAck: (Kind.ACK, _ack_to_wire),
    Book: (Kind.BOOK, book_to_wire),
    Bbo: (Kind.BBO, bbo_to_wire),
    Fills: (Kind.FILLS, fills_to_wire),
    Inexact: (Kind.INEXACT, inexact_to_wire),
}
_DECODERS: dict[Kind, Callable[[dict[str, Any]], Message]] = {
    Kind.GAP: gap_from_wire,
    Kind.STATUS: status_from_wire,
    Kind.BAR: bar_from_wire,
    Kind.LATE: _late_from_wire,
    Kind.ACK: _ack_from_wire,
    Kind.BOOK: book_from_wire,
    Kind.BBO: bbo_from_wire,
    Kind.FILLS: fills_from_wire,
    Kind.INEXACT: inexact_from_wire,
}


def kind_of(message: Message) -> Kind:
    """The wire `type` of a message."""
    return Kind.TRADES if type(message) is TradeBatch else _ENCODERS[type(message)][0]


class _Head(msgspec.Struct):
    """The envelope of any payload (its other fields are skipped in C)."""

    v: int
    type: str
    session: str
    seq: int


class _TradesPayload(msgspec.Struct):
    """A `trades` payload, envelope and body, as one Struct: the hot message of the bus is
    packed and unpacked in C (msgspec) instead of through dicts and per-field checks. Every
    field is written; `recv_us`, `covered_ms` and `tape` may be missing when read."""

    v: int
    type: str
    session: str
    seq: int
    coin: str
    recv_ms: int
    trades: Annotated[list[Trade], msgspec.Meta(max_length=MAX_TRADES_PER_BATCH)]
    recv_us: int = 0
    covered_ms: int = 0
    tape: tuple[str, int, int] | None = None


_PACK = msgspec.msgpack.Encoder()
_READ_HEAD = msgspec.msgpack.Decoder(_Head)
_READ_TRADES = msgspec.msgpack.Decoder(_TradesPayload)


def encode_message(envelope: Envelope, message: Message) -> bytes:
    """The one encoder: any typed message -> msgpack payload with envelope."""
    if type(message) is TradeBatch:
        return _encode_trades(envelope, message)
    kind, to_wire = _ENCODERS[type(message)]
    return encode(kind, envelope, to_wire(message))


def decode_message(payload: bytes) -> tuple[Envelope, Message]:
    """The one decoder: payload -> (envelope, typed message); ProtocolError if malformed."""
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        head = _READ_HEAD.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        head = None  # the generic decoder says precisely what is wrong
    if head is not None and head.type == Kind.TRADES and head.v == SCHEMA_VERSION:
        return _decode_trades(payload)
    data = decode(payload)
    try:
        kind = Kind(data["type"])
    except ValueError:
        raise ProtocolError(f"unknown message type {data['type']!r}") from None
    if kind is Kind.TRADES:
        return _decode_trades(payload)  # says what msgspec found wrong with it
    return Envelope(data["session"], data["seq"]), _DECODERS[kind](data)


def _encode_trades(envelope: Envelope, batch: TradeBatch) -> bytes:
    tape = batch.tape
    return _PACK.encode(
        _TradesPayload(
            SCHEMA_VERSION,
            Kind.TRADES.value,
            envelope.session,
            envelope.seq,
            batch.coin,
            batch.recv_ms,
            list(batch.trades),
            batch.recv_us,
            batch.covered_ms,
            None if tape is None else (tape.day, tape.start, tape.end),
        )
    )


def _decode_trades(payload: bytes) -> tuple[Envelope, TradeBatch]:
    try:
        wire = _READ_TRADES.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"trades payload: {exc}") from None
    check_decimals(wire.trades)
    span = None
    if wire.tape is not None:
        day, start, end = wire.tape
        if not 0 <= start <= end:
            raise ProtocolError("tape span is not 0 <= start <= end")
        span = TapeSpan(day, start, end)
    batch = TradeBatch(
        wire.coin, wire.recv_ms, tuple(wire.trades), span, wire.recv_us, wire.covered_ms
    )
    return Envelope(wire.session, wire.seq), batch
