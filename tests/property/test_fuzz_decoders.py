"""Fuzzing the edges: no input to a decoder raises anything but ProtocolError.

Covers the websocket JSON path (ingest `parse_frame`) and the bus decoders
(`decode`, `trades_from_payload`, `bar_from_wire`, `gap_from_wire`) and the tap helper.
"""

from __future__ import annotations

import contextlib
import json

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import (
    Envelope,
    bar_from_wire,
    decode,
    encode,
    gap_from_wire,
    trades_from_payload,
)
from hlstream.tap import Tap
from hlstream.services.ingest.core import parse_frame

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
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


def _only_protocol_errors(action) -> None:
    with contextlib.suppress(ProtocolError):
        action()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_websocket_bytes_never_raise_unexpected(raw):
    _only_protocol_errors(lambda: parse_frame(raw))


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_websocket_json_of_any_shape_never_raises_unexpected(value):
    _only_protocol_errors(lambda: parse_frame(json.dumps(value)))


@settings(max_examples=150, deadline=None)
@given(st.lists(trade_like, max_size=6))
def test_trades_frames_with_junk_fields_reject_entries_not_the_process(entries):
    _only_protocol_errors(lambda: parse_frame(json.dumps({"channel": "trades", "data": entries})))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_bus_payload_bytes_never_raise_unexpected(raw):
    _only_protocol_errors(lambda: decode(raw))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=12))
def test_bus_maps_of_any_shape_never_raise_unexpected(body):
    try:
        payload = encode("x", Envelope("s", 1), body)
    except OverflowError:  # not representable in msgpack: cannot arrive on the wire
        return

    def attempt() -> None:
        data = decode(payload)
        for reader in (trades_from_payload, bar_from_wire, gap_from_wire):
            _only_protocol_errors(lambda reader=reader: reader(data))

    _only_protocol_errors(attempt)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=0, max_size=3))
def test_tap_counts_malformed_frames_instead_of_raising(frames):
    tap = Tap.__new__(Tap)
    tap.prefixes, tap.malformed, tap.lost, tap._last = ["trade."], 0, 0, {}
    result = tap._decode(frames) if frames else None
    assert result is None or result.topic.startswith("trade.")


def test_tap_decodes_a_valid_frame():
    tap = Tap.__new__(Tap)
    tap.prefixes, tap.malformed, tap.lost, tap._last = ["trade."], 0, 0, {}
    payload = msgpack.packb({"v": 1, "type": "trades", "session": "a", "seq": 1, "trades": []})
    message = tap._decode([b"trade.BTC|", payload])
    assert message is not None and message.event == "first"
