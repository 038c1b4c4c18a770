"""Tap the hlstream bus from any Python process: needs only pyzmq and msgpack.

This file is self-contained on purpose (it imports nothing from hlstream), so a strategy
can copy or vendor it. Three lines:

    from hlstream.tap import Tap
    for msg in Tap("ipc:///path/to/run/trades.sock", ["trade.BTC|"]):
        print(msg.topic, msg.data)

Each message is a `TapMessage(topic, data, event, lost)`: `data` is the decoded msgpack
map (see the README's wire format); `event` is "first", "ok", "restart" (the publisher
restarted: new session id), "loss" (`lost` messages were dropped, e.g. a full queue) or
"stale" (a repeated or older sequence number: nothing was lost).
Topics end with "|", so "trade.ETH|" never matches "trade.ETHFI|"; a prefix such as
"trade." or "bar.5s." subscribes to a whole family. Topics are also compared exactly on
receipt. Malformed frames are counted in `Tap.malformed` and skipped. When the bus runs
CURVE (`curve_secret_file`), pass the server's Z85 public key as `server_key`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq

SCHEMA_VERSION = 2
MAX_FRAME_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class TapMessage:
    """One decoded bus message and what its sequence number says."""

    topic: str
    data: dict[str, Any]
    event: str
    lost: int


class Tap:
    """A SUB socket on one hlstream endpoint, yielding decoded messages."""

    def __init__(
        self,
        endpoint: str,
        prefixes: list[str],
        timeout_ms: int | None = None,
        server_key: bytes | None = None,
    ):
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, 100_000)
        for prefix in prefixes or [""]:
            self.socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        if server_key is not None:  # the bus runs CURVE: authenticate as a client
            public, secret = zmq.curve_keypair()
            self.socket.curve_publickey, self.socket.curve_secretkey = public, secret
            self.socket.curve_serverkey = server_key
        self.socket.connect(endpoint)
        self.prefixes = prefixes
        self.timeout_ms = timeout_ms
        self.malformed = 0
        self.lost = 0
        self._last: dict[str, tuple[str, int]] = {}

    def __iter__(self) -> Iterator[TapMessage]:
        while True:
            message = self.receive()
            if message is None:
                return
            yield message

    def receive(self) -> TapMessage | None:
        """The next valid message, or None when `timeout_ms` passes without one."""
        while True:
            if self.timeout_ms is not None and not self.socket.poll(self.timeout_ms):
                return None
            frames = self.socket.recv_multipart()
            message = self._decode(frames)
            if message is not None:
                return message

    def _decode(self, frames: list[bytes]) -> TapMessage | None:
        try:
            if len(frames) != 2 or len(frames[1]) > MAX_FRAME_BYTES:
                raise ValueError("bad frame count or size")
            topic = frames[0].decode("ascii")
            if self.prefixes and not any(topic.startswith(p) for p in self.prefixes):
                raise ValueError("topic does not match")
            data = msgpack.unpackb(frames[1], raw=False)
            version = data.get("v") if isinstance(data, dict) else None
            if type(version) is not int or version != SCHEMA_VERSION:
                raise ValueError(f"not a version-{SCHEMA_VERSION} map")
            session, seq = data["session"], data["seq"]
            if not isinstance(session, str) or type(seq) is not int:
                raise ValueError("bad session or seq")
        except (ValueError, KeyError, UnicodeDecodeError, msgpack.UnpackException):
            self.malformed += 1
            return None
        event, lost = self._sequence(topic, session, seq)
        return TapMessage(topic, data, event, lost)

    def _sequence(self, topic: str, session: str, seq: int) -> tuple[str, int]:
        # Mirrors hlstream.common.sequence.SeqTracker (this file imports nothing from
        # hlstream); tests/unit/test_sequence_table.py holds both to one table.
        previous = self._last.get(topic)
        if previous is None:
            self._last[topic] = (session, seq)
            return "first", 0
        if previous[0] != session:
            self._last[topic] = (session, seq)
            return "restart", 0
        if seq <= previous[1]:
            return "stale", 0  # a repeat or an older message: nothing was lost
        self._last[topic] = (session, seq)
        lost = seq - previous[1] - 1
        self.lost += lost
        return ("loss", lost) if lost else ("ok", 0)

    def close(self) -> None:
        self.socket.close()
