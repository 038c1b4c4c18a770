"""The aggregator's DEALER link to the writer around the outbox (outbox.py). Inexact-row
notices have a series of their own, so they never interleave with bars."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq

from hlstream.common.bus_io import CurveKeys, secure_client
from hlstream.common.errors import ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import (
    NOTICE_SERIES,
    Bar,
    BarAck,
    Decoder,
    Envelope,
    Inexact,
    ack_of,
    encode_message,
)
from hlstream.services.aggregator.outbox import Outbox

SEND_HWM = 100_000  # messages queued in the socket before a send would block
LOG_EVERY_S = 5.0  # a repeated warning is logged at most this often
_READ_ACK: Decoder[BarAck] = Decoder((BarAck,))
_READ_OUTBOX: Decoder[Bar | Inexact] = Decoder((Bar, Inexact))


def connect_writer(
    context: zmq.Context[Any], endpoint: str, curve: CurveKeys | None
) -> zmq.Socket[Any]:
    """The DEALER socket to the writer's ROUTER."""
    socket: zmq.Socket[Any] = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, SEND_HWM)
    secure_client(socket, curve)
    socket.connect(endpoint)
    return socket


class WriterLink:
    """Queues bars for the writer, sends the due ones, and drops them once acked."""

    def __init__(
        self, socket: zmq.Socket[Any], envelope: Callable[[], Envelope], log: EventLog
    ) -> None:
        self.socket = socket
        self.envelope = envelope
        self.log = log
        self.outbox = Outbox()
        self.acks = 0
        self.malformed = 0

    def queue(self, item: Bar | Inexact) -> None:
        ack = ack_of(item)  # the item's outbox key is the ack that settles it
        payload = encode_message(self.envelope(), item)
        self.outbox.add((ack.coin, ack.interval, ack.start_ms), payload)

    def pending(self) -> list[Bar | Inexact]:
        """Every un-acked bar and notice (for the checkpoint)."""
        return [_READ_OUTBOX.decode(payload)[1] for payload in self.outbox.payloads()]

    def send_due(self, now_ms: int) -> None:
        for key, payload in self.outbox.due(now_ms):
            frame = b"inexact" if key[1].endswith(NOTICE_SERIES) else b"bar"
            try:
                self.socket.send_multipart([frame, payload], flags=zmq.NOBLOCK)
            except zmq.Again:
                self.log.warning_limited("writer_full", LOG_EVERY_S, "writer_queue_full", bar=key)

    def drain_acks(self) -> None:
        while True:
            try:
                frames = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if len(frames) != 2 or frames[0] != b"ack":
                    raise ProtocolError("ack must be [b'ack', payload]")
                _, ack = _READ_ACK.decode(frames[1])
            except ProtocolError as exc:
                self.malformed += 1
                self.log.warning_limited(
                    "bad_ack", LOG_EVERY_S, "malformed_ack", error=str(exc)[:200]
                )
                continue
            if self.outbox.ack((ack.coin, ack.interval, ack.start_ms)):
                self.acks += 1

    def flush(self, wait_s: float, monotonic: Callable[[], float], poll_ms: int) -> None:
        """Wait up to `wait_s` for acks of what is in flight."""
        deadline = monotonic() + wait_s
        while self.outbox.size and monotonic() < deadline:
            if self.socket.poll(poll_ms, zmq.POLLIN):
                self.drain_acks()
