"""ZeroMQ sockets for the bus: a publisher that stamps session + per-topic seq, a subscriber,
and CURVE on every socket when `curve_secret_file` is set: bound sockets are servers with the
stages' one key pair; a client without its public key completes no handshake.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import zmq

from hlstream.common.config import Settings, read_curve_secret
from hlstream.common.messages import Envelope, Message, encode_message

PUB_HWM = 200_000
PUB_LINGER_MS = 200  # on close, how long queued messages may still go out


@dataclass(frozen=True)
class CurveKeys:
    """The bus server key pair (Z85)."""

    secret: bytes
    public: bytes


def curve_keys(settings: Settings) -> CurveKeys | None:
    """The server key pair from `curve_secret_file`, or None when CURVE is off."""
    if not settings.curve_secret_file:
        return None
    secret = read_curve_secret(settings.curve_secret_file)
    return CurveKeys(secret, zmq.curve_public(secret))


def secure_server(socket: zmq.Socket[Any], keys: CurveKeys | None) -> None:
    """Make a socket that binds a CURVE server (call before bind)."""
    if keys is None:
        return
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


def secure_client(socket: zmq.Socket[Any], keys: CurveKeys | None) -> None:
    """Make a socket that connects a CURVE client of the server (call before connect)."""
    if keys is None:
        return
    public, secret = zmq.curve_keypair()
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_serverkey = keys.public


def new_session_id() -> str:
    """A random id that is new on every process start."""
    return secrets.token_hex(8)


_SNDMORE = int(zmq.SNDMORE)


class Publisher:
    """A bound PUB socket that stamps session and per-topic sequence numbers."""

    def __init__(
        self,
        context: zmq.Context[Any],
        endpoint: str,
        session: str | None = None,
        curve: CurveKeys | None = None,
    ):
        self.session = session or new_session_id()
        self.socket = context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, PUB_HWM)
        self.socket.setsockopt(zmq.LINGER, PUB_LINGER_MS)
        secure_server(self.socket, curve)
        self.socket.bind(endpoint)
        self._seq: dict[str, int] = {}
        self.sent = 0

    def next_envelope(self, topic: str) -> Envelope:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        return Envelope(self.session, seq)

    def publish(self, topic: str, message: Message) -> None:
        """Send one message on `topic`; never blocks (PUB drops when a subscriber is full)."""
        payload = encode_message(self.next_envelope(topic), message)
        # Two plain copying sends: for messages this small, zero-copy frame set-up and
        # send_multipart's checks cost more than the copies (docs/performance.md).
        self.socket.send(topic.encode("utf-8"), _SNDMORE)
        self.socket.send(payload)
        self.sent += 1

    def close(self) -> None:
        self.socket.close()


def subscribe_socket(
    context: zmq.Context[Any],
    endpoint: str,
    prefixes: list[str],
    curve: CurveKeys | None = None,
) -> zmq.Socket[Any]:
    """A SUB socket connected to `endpoint` and subscribed to each topic prefix."""
    socket: zmq.Socket[Any] = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, PUB_HWM)
    socket.setsockopt(zmq.LINGER, 0)
    for prefix in prefixes:
        socket.setsockopt(zmq.SUBSCRIBE, prefix.encode("utf-8"))
    secure_client(socket, curve)
    socket.connect(endpoint)
    return socket
