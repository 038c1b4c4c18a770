"""Fuzzing the edges: every decoder accepts what its encoder wrote and rejects junk as documented.

Covers the websocket JSON path (ingest `parse_frame`), the bus decoders (`decode_message` and
a `Decoder` per message type, fed maps packed with plain msgpack as any publisher would) and
the tap helper (`Tap._decode`). For each of them:

- arbitrary input never raises anything but ProtocolError (the tap raises nothing: it counts);
- well-formed input built from valid parts is accepted and round-trips to equal values, so a
  decoder that rejected everything fails here;
- input made malformed on purpose raises ProtocolError, or moves the malformed counter by
  exactly one per bad item (`Frame.rejected` per venue trade, `Tap.malformed` per frame).
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import (
    MAX_FRAME_BYTES,
    SCHEMA_VERSION,
    Bar,
    Decoder,
    Envelope,
    Gap,
    Kind,
    Message,
    Trade,
    TradeBatch,
    encode_message,
    trade_topic,
)
from hlstream.services.ingest.core import DATA_CHANNELS, FrameKind, parse_frame
from hlstream.sim.market import format_units
from hlstream.tap import Tap
from tests.support.wire import MESSAGES, decode_message

# ---- arbitrary input ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=30,
)
KNOWN_CHANNELS = sorted({"trades", "pong", "subscriptionResponse", "error", *DATA_CHANNELS})
frame_shaped = st.fixed_dictionaries(
    {"channel": st.one_of(st.sampled_from(KNOWN_CHANNELS), st.text(max_size=10), json_values)},
    optional={"data": json_values},
)
trade_like = st.fixed_dictionaries(
    {},
    optional={
        "coin": st.one_of(st.text(max_size=8), st.integers()),
        "side": st.sampled_from(["B", "A", "X", "", 1]),
        "px": st.one_of(st.text(max_size=12), st.floats(), st.integers()),
        "sz": st.one_of(st.text(max_size=12), st.floats(), st.integers()),
        "time": st.one_of(st.integers(), st.floats(), st.text(max_size=14), st.none()),
        "tid": st.one_of(st.integers(), st.booleans(), st.text(max_size=5)),
        "hash": st.one_of(st.text(max_size=5), st.none()),
    },
)
ENVELOPE_KEYS = frozenset({"v", "type", "session", "seq"})
# Field names of every bus message, so random bodies sometimes hit the real readers.
BUS_FIELDS = sorted(
    {
        "coin",
        "side",
        "price",
        "size",
        "ts_ms",
        "tid",
        "hash",
        "interval",
        "start_ms",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trades",
        "complete",
        "source",
        "from_ms",
        "to_ms",
        "reason",
        "recv_ms",
        "trade",
        "service",
        "pid",
        "counters",
        "feed",
        "files",
        "refused",
        "bids",
        "asks",
        "bid",
        "ask",
        "user",
        "is_snapshot",
        "fills",
    }
)

# ---- well-formed building blocks ---------------------------------------------------------

coins = st.text(alphabet=string.ascii_letters + string.digits + "@/", min_size=1, max_size=10)
decimal_texts = st.builds(format_units, st.integers(1, 10**12), st.integers(0, 8))
venue_ms = st.integers(10**12, 10**15 - 1)  # what the venue sends: epoch ms, int
addresses = st.text("0123456789abcdefABCDEF", min_size=40, max_size=40).map(lambda h: "0x" + h)
valid_trades = st.builds(
    Trade,
    coin=coins,
    side=st.sampled_from(["buy", "sell"]),
    price=decimal_texts,
    size=decimal_texts,
    ts_ms=venue_ms,
    tid=st.integers(0, 2**53),
    hash=st.text(alphabet="0123456789abcdefx", max_size=66),
    users=st.none() | st.tuples(addresses, addresses),
)
batches = st.builds(
    TradeBatch,
    coin=coins,
    recv_ms=venue_ms,
    trades=st.lists(valid_trades, max_size=8).map(tuple),
    recv_us=st.integers(0, 2**62),
    covered_ms=st.one_of(st.just(0), venue_ms),
)
envelopes = st.builds(
    Envelope,
    session=st.text(alphabet=string.hexdigits, min_size=1, max_size=32),
    seq=st.integers(1, 2**63 - 1),
)
valid_bars = st.builds(
    Bar,
    coin=coins,
    interval=st.sampled_from(["1s", "5s", "1m", "1h", "1d"]),
    start_ms=venue_ms,
    open=decimal_texts,
    high=decimal_texts,
    low=decimal_texts,
    close=decimal_texts,
    volume=decimal_texts | st.just("0.0"),
    trades=st.integers(0, 10**9),
    complete=st.booleans(),
    source=st.sampled_from(["ws", "rest"]),
)
valid_gaps = st.builds(
    Gap, coin=coins, from_ms=venue_ms, to_ms=venue_ms, reason=st.text(max_size=30)
)

# ---- malformed building blocks -----------------------------------------------------------

MISSING = "<missing>"  # sentinel: delete the field
NOT_A_MAP = (None, "x", 1, [])
DECIMAL_JUNK = ("0", "0.0", "-1", "NaN", "Infinity", "abc", "", "1" * 65)
WRONG_TYPE: dict[type, tuple[Any, ...]] = {
    str: (None, 1, 1.5, True, b"x", []),
    int: (None, "1", 1.5, True, False, b"1", []),
    bool: (None, 0, 1, "true"),
}
ADDRESS = "0x" + "ab" * 20
USERS_JUNK = (  # what is not two addresses; a missing or nil `users` is no users
    "x",
    1,
    [],
    [ADDRESS],
    [ADDRESS, ADDRESS, ADDRESS],
    [ADDRESS, 1],
    [ADDRESS, ADDRESS[:-1]],
    [ADDRESS, ADDRESS + "a"],
    [ADDRESS, "0x" + "g" * 40],
    [ADDRESS, "0X" + "a" * 40],
    {"buyer": ADDRESS},
)
BUS_TRADE_JUNK = {
    "side": ("B", "A", "BUY", ""),
    "price": DECIMAL_JUNK,
    "size": DECIMAL_JUNK,
    "users": USERS_JUNK,
}
VENUE_JUNK: dict[str, tuple[Any, ...]] = {  # every field parse_trade needs; "hash" is optional
    "coin": (MISSING, None, "", 1, ["BTC"]),
    "side": (MISSING, None, "", "X", "buy", "b", 1),
    "px": (MISSING, None, 1.5, 5, *DECIMAL_JUNK),
    "sz": (MISSING, None, 1.5, 5, *DECIMAL_JUNK),
    "time": (MISSING, None, True, 0, -1, "abc", "NaN", 1e16, [], {}),
    "tid": (MISSING, None, -1, True, "5", 1.0),
}


def _with(mapping: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    changed = dict(mapping)
    if value == MISSING:
        changed.pop(field, None)
    else:
        changed[field] = value
    return changed


@st.composite
def one_bad_field(
    draw: st.DrawFn, wire: dict[str, Any], extra: dict[str, tuple[Any, ...]] | None = None
) -> dict[str, Any]:
    """`wire` with one field deleted, of the wrong type, or (per `extra`) out of range; an
    optional field (`users`) only as `extra` says."""
    field = draw(st.sampled_from(sorted(wire)))
    choices = (*(extra or {}).get(field, ()),)
    if field != "users":
        choices = (MISSING, *WRONG_TYPE[type(wire[field])], *choices)
    return _with(wire, field, draw(st.sampled_from(choices)))


def venue_entry(trade: Trade) -> dict[str, Any]:
    """The venue's WsTrade for `trade` (what the exchange sends on the trades channel)."""
    return {
        "coin": trade.coin,
        "side": "B" if trade.side == "buy" else "A",
        "px": trade.price,
        "sz": trade.size,
        "time": trade.ts_ms,
        "tid": trade.tid,
        "hash": trade.hash,
        **({} if trade.users is None else {"users": list(trade.users)}),
    }


@st.composite
def venue_entries(draw: st.DrawFn) -> tuple[Any, Trade | None]:
    """A venue trade entry and the Trade ingest must make of it (None: it must be rejected)."""
    trade = draw(valid_trades)
    entry = venue_entry(trade)
    how = draw(st.sampled_from(["valid", "odd hash", "odd users", "bad field", "not a map"]))
    if how == "valid":
        return entry, trade
    if how == "odd hash":  # hash is optional: a missing or odd one becomes ""
        odd = _with(entry, "hash", draw(st.sampled_from([MISSING, None, 1, []])))
        return odd, msgspec.structs.replace(trade, hash="")
    if how == "odd users":  # users are optional: missing or odd ones are dropped
        odd = _with(entry, "users", draw(st.sampled_from([MISSING, None, *USERS_JUNK])))
        return odd, msgspec.structs.replace(trade, users=None)
    if how == "bad field":
        field = draw(st.sampled_from(sorted(VENUE_JUNK)))
        return _with(entry, field, draw(st.sampled_from(VENUE_JUNK[field]))), None
    return draw(st.sampled_from(NOT_A_MAP)), None


def _expected_frame_kind(value: object) -> FrameKind | None:
    """What parse_frame must classify a decoded JSON value as; None if it must raise."""
    if not isinstance(value, dict) or not isinstance(value.get("channel"), str):
        return None
    channel = value["channel"]
    if channel == "trades":
        return FrameKind.TRADES if isinstance(value.get("data"), list) else None
    fixed = {
        "pong": FrameKind.PONG,
        "subscriptionResponse": FrameKind.SUBSCRIBED,
        "error": FrameKind.ERROR,
    }
    if channel in fixed:
        return fixed[channel]
    return FrameKind.DATA if channel in DATA_CHANNELS else FrameKind.UNKNOWN


def _assert_parse_frame_follows_the_spec(text: str | bytes) -> None:
    """parse_frame accepts exactly the JSON objects with a string channel (and trades list)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    expected = _expected_frame_kind(value)
    if expected is None:
        with pytest.raises(ProtocolError):
            parse_frame(text)
        return
    frame = parse_frame(text)
    assert frame.kind is expected and frame.channel == value["channel"]
    if expected is FrameKind.TRADES:
        assert len(frame.trades) + frame.rejected == len(value["data"]), "each entry counted"


def to_wire(record: Any) -> dict[str, Any]:
    """A message's (or trade's) map as a subscriber unpacks it."""
    wire: dict[str, Any] = msgpack.unpackb(msgspec.msgpack.encode(record), raw=False)
    return wire


def encode(kind: str, envelope: Envelope, body: dict[str, Any]) -> bytes:
    """A payload packed by plain msgpack, as a publisher in any language would: envelope, then
    `body` (which may override it)."""
    head = {"v": SCHEMA_VERSION, "type": kind, "session": envelope.session, "seq": envelope.seq}
    packed: bytes = msgpack.packb({**head, **body}, use_bin_type=True)
    return packed


READERS: dict[Kind, Decoder[Message]] = {kind.kind: Decoder((kind,)) for kind in MESSAGES}


def _batch_map(envelope: Envelope, batch: TradeBatch) -> dict[str, Any]:
    """The payload map of a trades message, written out independently of the codec."""
    return {
        "v": SCHEMA_VERSION,
        "type": "trades",
        "session": envelope.session,
        "seq": envelope.seq,
        "coin": batch.coin,
        "recv_ms": batch.recv_ms,
        "recv_us": batch.recv_us,
        "trades": [to_wire(t) for t in batch.trades],
        "covered_ms": batch.covered_ms,
        "tape": None if batch.tape is None else [batch.tape.day, batch.tape.start, batch.tape.end],
    }


def _tap() -> Tap:
    tap = Tap.__new__(Tap)  # no socket: _decode is pure
    tap.prefixes, tap.malformed, tap.lost, tap._last = ["trade."], 0, 0, {}
    return tap


# ---- websocket frames (ingest parse_frame) -----------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_websocket_bytes_never_raise_unexpected(raw):
    _assert_parse_frame_follows_the_spec(raw)


@settings(max_examples=150, deadline=None)
@given(st.one_of(json_values, frame_shaped))
def test_websocket_json_of_any_shape_never_raises_unexpected(value):
    _assert_parse_frame_follows_the_spec(json.dumps(value))


@pytest.mark.parametrize(
    "text",
    [
        b"",
        "",
        "not json",
        b"\xff\xfe\x00",
        "[]",
        "null",
        '"trades"',
        "{}",
        '{"channel": 1}',
        '{"channel": null, "data": []}',
        '{"channel": "trades"}',
        '{"channel": "trades", "data": {}}',
        "[" * 100_000,
    ],
)
def test_malformed_websocket_frames_raise_protocol_error(text):
    with pytest.raises(ProtocolError):
        parse_frame(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(trade_like, max_size=6))
def test_trades_frames_with_junk_fields_reject_entries_not_the_process(entries):
    frame = parse_frame(json.dumps({"channel": "trades", "data": entries}))
    assert frame.kind is FrameKind.TRADES
    assert len(frame.trades) + frame.rejected == len(entries), "every entry kept or counted"
    assert all(
        t.coin and Decimal(t.price) > 0 and Decimal(t.size) > 0 and t.tid >= 0 for t in frame.trades
    ), "only usable trades get through"


@settings(max_examples=150, deadline=None)
@given(st.lists(valid_trades, min_size=1, max_size=8), st.booleans())
def test_well_formed_venue_trades_are_all_accepted_unchanged(trades, as_bytes):
    text = json.dumps({"channel": "trades", "data": [venue_entry(t) for t in trades]})
    frame = parse_frame(text.encode() if as_bytes else text)
    assert frame.kind is FrameKind.TRADES
    assert frame.trades == tuple(trades)
    assert frame.rejected == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(venue_entries(), min_size=1, max_size=8))
def test_each_malformed_venue_trade_is_rejected_and_counted_once(cases):
    frame = parse_frame(json.dumps({"channel": "trades", "data": [e for e, _ in cases]}))
    assert frame.kind is FrameKind.TRADES
    assert frame.trades == tuple(t for _, t in cases if t is not None)
    assert frame.rejected == sum(t is None for _, t in cases)


# ---- bus payloads (common.messages) ------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_bus_payload_bytes_never_raise_unexpected(raw):
    try:
        envelope, message = decode_message(raw)
    except ProtocolError:
        return
    assert isinstance(envelope, Envelope) and isinstance(message, MESSAGES)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.text(max_size=10) | st.sampled_from(BUS_FIELDS), json_values, max_size=12)
)
def test_bus_maps_of_any_shape_never_raise_unexpected(body):
    try:
        payload = encode("x", Envelope("s", 1), body)
    except OverflowError:  # not representable in msgpack: cannot arrive on the wire
        return
    for kind, reader in READERS.items():
        try:
            _, message = reader.decode(payload)
        except ProtocolError:
            continue
        assert body.get("type") == kind and isinstance(message, MESSAGES)
    if "type" not in body:
        with pytest.raises(ProtocolError):
            decode_message(payload)  # "x" is no message type


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(Kind)),
    st.dictionaries(st.sampled_from(BUS_FIELDS) | st.text(max_size=10), json_values, max_size=12),
)
def test_bodies_of_any_shape_under_a_known_type_decode_or_raise_protocol_error(kind, body):
    body = {key: value for key, value in body.items() if key not in ENVELOPE_KEYS}
    try:
        payload = encode(kind, Envelope("s", 1), body)
    except OverflowError:
        return
    try:
        envelope, message = decode_message(payload)
    except ProtocolError:
        return
    assert envelope == Envelope("s", 1) and message.kind is kind


@settings(max_examples=150, deadline=None)
@given(envelopes, batches)
def test_trade_batches_round_trip_through_the_bus(envelope, batch):
    payload = encode_message(envelope, batch)
    assert msgpack.unpackb(payload, raw=False) == _batch_map(envelope, batch)
    assert decode_message(payload) == (envelope, batch)
    assert decode_message(msgpack.packb(_batch_map(envelope, batch))) == (envelope, batch)


@pytest.mark.parametrize(
    ("kind", "records"), [(Kind.BAR, valid_bars), (Kind.GAP, valid_gaps)], ids=["bar", "gap"]
)
@settings(max_examples=150, deadline=None)
@given(envelope=envelopes, data=st.data())
def test_bars_and_gaps_round_trip_and_refuse_one_bad_field(kind, records, envelope, data):
    record = data.draw(records)
    payload = encode(kind, envelope, to_wire(record))
    assert READERS[kind].decode(payload) == (envelope, record)
    assert decode_message(payload) == (envelope, record)
    assert msgpack.unpackb(encode_message(envelope, record)) == msgpack.unpackb(payload)

    bad = data.draw(one_bad_field(to_wire(record)))
    with pytest.raises(ProtocolError):
        READERS[kind].decode(encode(kind, envelope, bad))
    with pytest.raises(ProtocolError):
        decode_message(encode(kind, envelope, bad))


@settings(max_examples=200, deadline=None)
@given(envelopes, batches.filter(lambda b: b.trades), st.data())
def test_a_batch_with_one_bad_trade_is_refused(envelope, batch, data):
    wires = [to_wire(t) for t in batch.trades]
    index = data.draw(st.integers(0, len(wires) - 1))
    wires[index] = data.draw(
        one_bad_field(wires[index], BUS_TRADE_JUNK) | st.sampled_from(NOT_A_MAP)
    )
    body = {"coin": batch.coin, "recv_ms": batch.recv_ms, "trades": wires}
    with pytest.raises(ProtocolError):
        decode_message(encode(Kind.TRADES, envelope, body))


ENVELOPE_JUNK: dict[str, tuple[Any, ...]] = {
    "v": (MISSING, None, SCHEMA_VERSION - 1, SCHEMA_VERSION + 1, str(SCHEMA_VERSION)),
    "type": (MISSING, None, 1, b"trades"),
    "session": (MISSING, None, 1, b"s"),
    "seq": (MISSING, None, "1", 1.5, True),
}


@settings(max_examples=200, deadline=None)
@given(envelopes, batches, st.data())
def test_bus_payload_with_a_bad_envelope_or_framing_raises_protocol_error(envelope, batch, data):
    good = encode_message(envelope, batch)
    how = data.draw(st.sampled_from(["envelope", "truncated", "trailing", "not a map"]))
    if how == "envelope":
        field = data.draw(st.sampled_from(sorted(ENVELOPE_JUNK)))
        value = data.draw(st.sampled_from(ENVELOPE_JUNK[field]))
        bad = msgpack.packb(_with(_batch_map(envelope, batch), field, value))
    elif how == "truncated":
        bad = good[: data.draw(st.integers(0, len(good) - 1))]
    elif how == "trailing":
        bad = good + data.draw(st.binary(min_size=1, max_size=4))
    else:
        bad = msgpack.packb([_batch_map(envelope, batch)])
    with pytest.raises(ProtocolError):
        decode_message(bad)


def test_unknown_message_type_is_refused():
    payload = encode("nope", Envelope("s", 1), {})
    with pytest.raises(ProtocolError, match="nope"):
        decode_message(payload)


# ---- tap (hlstream.tap.Tap._decode) ------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=3))  # zmq never delivers 0 frames
def test_tap_counts_malformed_frames_instead_of_raising(frames):
    tap = _tap()
    result = tap._decode(frames)
    assert result is None or result.topic.startswith("trade.")
    assert tap.malformed == (1 if result is None else 0), "one count per dropped frame"


def _repacked(body: dict[str, Any], field: str, value: Any) -> bytes:
    packed: bytes = msgpack.packb(_with(body, field, value))
    return packed


# name -> (topic, payload, payload map) -> frames the tap must drop and count
TAP_JUNK: dict[str, Callable[[bytes, bytes, dict[str, Any]], list[bytes]]] = {
    "one frame": lambda t, p, m: [t],
    "three frames": lambda t, p, m: [t, p, b""],
    "topic not ascii": lambda t, p, m: [t + b"\xff", p],
    "topic not subscribed": lambda t, p, m: [b"bar.5s." + t[len(b"trade.") :], p],
    "not msgpack": lambda t, p, m: [t, b"\xc1"],
    "truncated": lambda t, p, m: [t, p[:-1]],
    "trailing byte": lambda t, p, m: [t, p + b"\x00"],
    "not a map": lambda t, p, m: [t, msgpack.packb([m])],
    "old version": lambda t, p, m: [t, _repacked(m, "v", SCHEMA_VERSION - 1)],
    "no version": lambda t, p, m: [t, _repacked(m, "v", MISSING)],
    "no session": lambda t, p, m: [t, _repacked(m, "session", MISSING)],
    "int session": lambda t, p, m: [t, _repacked(m, "session", 1)],
    "no seq": lambda t, p, m: [t, _repacked(m, "seq", MISSING)],
    "text seq": lambda t, p, m: [t, _repacked(m, "seq", "1")],
    "float seq": lambda t, p, m: [t, _repacked(m, "seq", 1.5)],
    "oversized": lambda t, p, m: [t, b"\x00" * (MAX_FRAME_BYTES + 1)],
}


@st.composite
def tap_frames(draw: st.DrawFn) -> tuple[list[bytes], dict[str, Any] | None]:
    """Frames as the bus sends them, maybe broken; the map the tap must yield, or None."""
    envelope, batch = draw(envelopes), draw(batches)
    topic = trade_topic(batch.coin).encode("ascii")
    expected = _batch_map(envelope, batch)
    frames = [topic, encode_message(envelope, batch)]
    if draw(st.booleans()):
        return frames, expected
    breaker = TAP_JUNK[draw(st.sampled_from(sorted(TAP_JUNK)))]
    return breaker(topic, frames[1], expected), None


@settings(max_examples=150, deadline=None)
@given(st.lists(tap_frames(), min_size=1, max_size=6))
def test_tap_yields_valid_frames_and_counts_each_malformed_one_once(cases):
    tap = _tap()
    topics_seen: set[str] = set()
    for frames, expected in cases:
        before = tap.malformed
        message = tap._decode(frames)
        if expected is None:
            assert message is None
            assert tap.malformed == before + 1
            continue
        assert tap.malformed == before, "a valid frame was counted as malformed"
        assert message is not None
        assert message.topic == frames[0].decode("ascii") and message.data == expected
        if message.topic not in topics_seen:
            assert message.event == "first"
        topics_seen.add(message.topic)
    assert tap.malformed == sum(expected is None for _, expected in cases)


def test_tap_decodes_a_valid_frame():
    tap = _tap()
    payload = msgpack.packb(
        {"v": SCHEMA_VERSION, "type": "trades", "session": "a", "seq": 1, "trades": []}
    )
    message = tap._decode([b"trade.BTC|", payload])
    assert message is not None and message.event == "first"
    assert tap.malformed == 0


def test_schema_version_must_be_the_integer_not_an_equal_float() -> None:
    body = {"type": "trades", "session": "s", "seq": 1, "coin": "BTC", "recv_ms": 1, "trades": []}
    good = msgpack.packb({"v": SCHEMA_VERSION, **body})
    assert decode_message(good) == (Envelope("s", 1), TradeBatch("BTC", 1, ()))
    with pytest.raises(ProtocolError):
        decode_message(msgpack.packb({"v": float(SCHEMA_VERSION), **body}))


def test_tap_counts_a_bool_seq_and_an_empty_frame_list_as_malformed() -> None:
    tap = Tap.__new__(Tap)
    tap.prefixes, tap.malformed, tap.lost, tap._last = [], 0, 0, {}
    bad_seq = msgpack.packb({"v": SCHEMA_VERSION, "type": "trades", "session": "s", "seq": True})
    assert tap._decode([b"trade.BTC|", bad_seq]) is None
    assert tap._decode([]) is None
    assert tap.malformed == 2
    ok = msgpack.packb({"v": SCHEMA_VERSION, "type": "trades", "session": "s", "seq": 1})
    assert tap._decode([b"trade.BTC|", ok]) is not None and tap.malformed == 2
