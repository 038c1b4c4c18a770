"""Ingest's websocket frame reader: every message comes out whole, once, in order, however
the bytes are fragmented and chunked; bad frames are refused."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.errors import ProtocolError
from hlstream.services.ingest.wsframes import OP_BINARY as BINARY
from hlstream.services.ingest.wsframes import OP_CLOSE as CLOSE
from hlstream.services.ingest.wsframes import OP_CONT as CONT
from hlstream.services.ingest.wsframes import OP_PING as PING
from hlstream.services.ingest.wsframes import OP_PONG as PONG
from hlstream.services.ingest.wsframes import OP_TEXT as TEXT
from hlstream.services.ingest.wsframes import FrameParser, SocketFrames


def ws_frame(payload: bytes, opcode: int = TEXT, fin: bool = True, mask: bytes = b"") -> bytes:
    """One server frame (RFC 6455), unmasked unless `mask` is given."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + size.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + payload


def parse_all(data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    parser = FrameParser()
    out = []
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for lo, hi in zip(edges, edges[1:], strict=False):
        parser.feed(data[lo:hi])
        while (message := parser.next()) is not None:
            out.append(message)
    assert parser.buffered() == 0
    return out


big = st.builds(
    lambda unit, times: unit * times, st.binary(min_size=8, max_size=8), st.integers(100, 9000)
)
payloads = st.one_of(st.binary(max_size=200), big)  # lengths in 7, 16 and 64 bits
messages = st.lists(
    st.tuples(st.sampled_from([TEXT, BINARY]), payloads, st.integers(1, 4)), max_size=8
)


@settings(max_examples=60, deadline=None)
@given(messages, st.lists(st.integers(0, 10**6), max_size=20), st.booleans())
def test_fragmented_chunked_messages_come_out_whole_once_and_in_order(msgs, cuts, ping_inside):
    wire = b""
    expected: list[tuple[int, bytes]] = []
    for opcode, payload, pieces in msgs:
        step = max(1, len(payload) // pieces)
        parts = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            wire += ws_frame(part, opcode if i == 0 else CONT, fin=last)
            if ping_inside and not last:  # a control frame between fragments comes out first
                wire += ws_frame(b"hb", PING)
                expected.append((PING, b"hb"))
        expected.append((opcode, payload))
    assert parse_all(wire, cuts) == expected


def test_control_frames_and_masked_frames():
    wire = ws_frame(b"x", PONG) + ws_frame(b'{"a":1}', mask=b"\x01\x02\x03\x04")
    wire += ws_frame(b"\x03\xe8", CLOSE)
    assert parse_all(wire, []) == [(PONG, b"x"), (TEXT, b'{"a":1}'), (CLOSE, b"\x03\xe8")]


def test_an_incomplete_frame_waits_for_its_bytes():
    parser = FrameParser()
    frame = ws_frame(b"a" * 300)
    parser.feed(frame[:-1])
    assert parser.next() is None and parser.buffered() == len(frame) - 1
    parser.feed(frame[-1:])
    assert parser.next() == (TEXT, b"a" * 300)


@pytest.mark.parametrize(
    "wire, error",
    [
        (bytes([0x80 | 0x40 | TEXT, 0]), "reserved bits"),
        (bytes([0x80 | 0x3, 0]), "unknown opcode"),
        (bytes([0x80 | 0xB, 0]), "unknown control opcode"),
        (ws_frame(b"x", CONT), "continuation frame without a message"),
        (ws_frame(b"a", TEXT, fin=False) + ws_frame(b"b", TEXT), "starts inside another"),
        (ws_frame(b"p" * 126, PING), "control frame"),
        (ws_frame(b"p", PING, fin=False), "control frame"),
        (bytes([0x81, 127]) + (2**40).to_bytes(8, "big"), "too big"),
    ],
)
def test_bad_frames_are_refused(wire, error):
    parser = FrameParser()
    parser.feed(wire)
    with pytest.raises(ProtocolError, match=error):
        parser.next()


def test_socket_frames_read_messages_and_count_what_waits_unhandled():
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(0.5)
        frames = SocketFrames(left)
        first, second = ws_frame(b"one"), ws_frame(b"x" * 1000)
        right.sendall(first + second + second[:10])
        assert frames.read() == (TEXT, b"one")
        assert frames.ready()  # the second is whole in the buffer
        assert frames.backlog_bytes() == 1000 + 10  # its payload and a part of the next
        assert frames.read() == (TEXT, b"x" * 1000)
        assert not frames.ready()  # only part of a frame waits
        right.sendall(second[10:] + second)
        time.sleep(0.05)
        assert frames.backlog_bytes() == 2 * len(second)  # 10 buffered + the kernel's queue
        assert frames.read() == (TEXT, b"x" * 1000) and frames.read_us > 0
        assert frames.read() == (TEXT, b"x" * 1000)
        with pytest.raises(TimeoutError):
            frames.read()
        right.close()
        with pytest.raises(ConnectionError):
            frames.read()
