"""JetStream publishes with acks, many at a time on one connection.

Every message goes out as a plain publish whose reply subject is `{inbox}.{seq}`; one
wildcard subscription on `{inbox}.*` receives the server's acks and matches each to its
message by `seq`. Publishing a whole batch without awaiting in between lets the client write
it to the socket in a few large writes, and no future or reply subscription is created per
message. At most `MAX_IN_FLIGHT` publishes are unacked at once.

A message whose ack is an error, or that is not acked within `ACK_TIMEOUT_S`, is published
again with the same `Nats-Msg-Id` (the server drops it if the first copy was stored after
all), up to `PUBLISH_ATTEMPTS` times; then `publish` raises and the caller keeps its progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from hlstream.services.relay.core import MSG_ID_HEADER, Outgoing

MAX_IN_FLIGHT = 8_192  # unacked publishes at most
ACK_TIMEOUT_S = 10.0  # no ack for this long: the message is published again
PUBLISH_ATTEMPTS = 3
CONNECTED_CHECK_S = 0.5  # while awaiting acks, how often the connection is checked
NO_RESPONDERS = "503"  # the server's status when no stream takes the subject


class PublishError(nats.errors.Error):
    """Messages still not acked after `PUBLISH_ATTEMPTS`; the text says why."""


class _ApiError(msgspec.Struct, gc=False):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, gc=False):
    """The server's reply to one publish: a stored (or duplicate) message, or an error."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_ACK = msgspec.json.Decoder(PubAck)


def read_ack(data: bytes, status: str | None) -> PubAck:
    """The ack in a reply's body, or one carrying the error the reply stands for."""
    if status == NO_RESPONDERS:
        return PubAck(error=_ApiError(503, 0, "no stream takes this subject"))
    try:
        return _ACK.decode(data)
    except msgspec.DecodeError:
        return PubAck(error=_ApiError(0, 0, f"unreadable ack {data[:80]!r}"))


@dataclass(eq=False)
class _Round:
    """One `publish` call's messages awaiting acks."""

    unacked: int = 0
    duplicates: int = 0
    failed: list[int] = field(default_factory=list)
    last_error: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class AckedPublisher:
    """Publishes on `nc` and awaits acks; `publish` may be called by several tasks at once."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._next_seq = 0
        self._waiting: dict[int, tuple[_Round, int]] = {}  # reply seq -> (round, index)
        self._room = asyncio.Event()

    async def start(self) -> None:
        """Subscribe to the ack inbox; call once, before `publish`."""
        self._prefix = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def publish(self, messages: Sequence[Outgoing]) -> tuple[int, int]:
        """Publish `messages` with their ids; return (acked, duplicates) once all are acked."""
        current = _Round()
        todo = list(range(len(messages)))
        for _ in range(PUBLISH_ATTEMPTS):
            current.failed = []
            current.done.clear()
            await self._send(messages, todo, current)
            await self._await_acks(current)
            if not current.failed:
                return len(messages), current.duplicates
            todo = sorted(current.failed)
        raise PublishError(
            f"{len(todo)} of {len(messages)} publishes not acked after {PUBLISH_ATTEMPTS}"
            f" attempts: {current.last_error}"
        )

    async def _send(self, messages: Sequence[Outgoing], todo: list[int], current: _Round) -> None:
        publish = self._nc.publish
        for index in todo:
            if len(self._waiting) >= MAX_IN_FLIGHT:
                await self._wait_for_room()
            seq = self._next_seq
            self._next_seq += 1
            self._waiting[seq] = (current, index)
            current.unacked += 1
            message = messages[index]
            await publish(
                message.subject,
                message.payload,
                reply=self._prefix + str(seq),
                headers={MSG_ID_HEADER: message.msg_id},
            )

    async def _wait_for_room(self) -> None:
        self._room.clear()
        try:
            await asyncio.wait_for(self._room.wait(), ACK_TIMEOUT_S)
        except TimeoutError:
            raise nats.errors.TimeoutError from None

    async def _await_acks(self, current: _Round) -> None:
        """Until every ack of `current` came or `ACK_TIMEOUT_S` passed; raises at once when
        the connection is lost (its acks will never come)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACK_TIMEOUT_S
        while current.unacked and (left := deadline - loop.time()) > 0:
            if not self._nc.is_connected:
                raise nats.errors.ConnectionClosedError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(current.done.wait(), min(left, CONNECTED_CHECK_S))
        if current.unacked:  # timed out: these are published again
            late = [seq for seq, (owner, _) in self._waiting.items() if owner is current]
            for seq in late:
                current.failed.append(self._waiting.pop(seq)[1])
            current.unacked = 0
            current.last_error = f"no ack within {ACK_TIMEOUT_S:g} s"

    async def _on_reply(self, msg: Msg) -> None:
        try:
            entry = self._waiting.pop(int(msg.subject[len(self._prefix) :]))
        except (KeyError, ValueError):
            return  # the ack of a message already given up on, published again
        current, index = entry
        ack = read_ack(msg.data, msg.headers.get("Status") if msg.headers else None)
        if ack.error is not None:
            current.failed.append(index)
            current.last_error = f"{ack.error.code} {ack.error.description}".strip()
        elif ack.duplicate:
            current.duplicates += 1
        current.unacked -= 1
        if current.unacked == 0:
            current.done.set()
        if len(self._waiting) <= MAX_IN_FLIGHT // 2:
            self._room.set()
