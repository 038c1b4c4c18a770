"""ZeroMQ sockets for the bus: a publisher that stamps session + per-topic seq, a subscriber.

Endpoints come from Settings (ipc:// in the 0700 run dir by default). Messages are
multipart `[topic, payload]`; see common/messages.py for the wire format.
"""

from __future__ import annotations

import secrets
from typing import Any

import zmq

from common.messages import Envelope, encode

PUB_HWM = 200_000


def new_session_id() -> str:
    """A random id that is new on every process start."""
    return secrets.token_hex(8)


class Publisher:
    """A bound PUB socket that stamps session and per-topic sequence numbers."""

    def __init__(self, context: zmq.Context[Any], endpoint: str, session: str | None = None):
        self.session = session or new_session_id()
        self.socket = context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, PUB_HWM)
        self.socket.setsockopt(zmq.LINGER, 200)
        self.socket.bind(endpoint)
        self._seq: dict[str, int] = {}
        self.sent = 0

    def next_envelope(self, topic: str) -> Envelope:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        return Envelope(self.session, seq)

    def publish(self, topic: str, kind: str, body: dict[str, Any]) -> None:
        """Send one message on `topic`; never blocks (PUB drops when a subscriber is full)."""
        payload = encode(kind, self.next_envelope(topic), body)
        self.socket.send_multipart([topic.encode("utf-8"), payload], copy=False)
        self.sent += 1

    def close(self) -> None:
        self.socket.close()


def subscribe_socket(
    context: zmq.Context[Any], endpoint: str, prefixes: list[str]
) -> zmq.Socket[Any]:
    """A SUB socket connected to `endpoint` and subscribed to each topic prefix."""
    socket: zmq.Socket[Any] = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, PUB_HWM)
    socket.setsockopt(zmq.LINGER, 0)
    for prefix in prefixes:
        socket.setsockopt(zmq.SUBSCRIBE, prefix.encode("utf-8"))
    socket.connect(endpoint)
    return socket
