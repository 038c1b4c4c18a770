"""The relay's acked publisher against a real nats-server: a message whose ack is an error
or never comes is published again with the same Nats-Msg-Id, and a batch that stays unacked
fails as a whole (the relay then keeps its progress)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import nats
import pytest

from hlstream.services.relay import publish_io
from hlstream.services.relay.core import MSG_ID_HEADER, Outgoing
from hlstream.services.relay.publish_io import AckedPublisher, PublishError
from tests.support.servers import NatsServer


def _messages(subject: str, n: int) -> list[Outgoing]:
    return [Outgoing(subject, f"id-{i}", b"payload %d" % i) for i in range(n)]


async def _error_then_ack(url: str) -> tuple[tuple[int, int], Counter[str]]:
    """A responder standing in for a stream answers each id's first copy with an error."""
    nc = await nats.connect(url)
    seen: Counter[str] = Counter()

    async def respond(msg: nats.aio.msg.Msg) -> None:
        msg_id = (msg.headers or {})[MSG_ID_HEADER]
        seen[msg_id] += 1
        if seen[msg_id] == 1:
            reply = {"error": {"code": 503, "err_code": 10008, "description": "busy"}}
        else:
            reply = {"stream": "T", "seq": sum(seen.values())}
        await nc.publish(msg.reply, json.dumps(reply).encode())

    try:
        await nc.subscribe("relaytest.flaky", cb=respond)
        publisher = AckedPublisher(nc)
        await publisher.start()
        return await publisher.publish(_messages("relaytest.flaky", 50)), seen
    finally:
        await nc.close()


async def _never_acked(url: str) -> tuple[str, Counter[str]]:
    nc = await nats.connect(url)
    seen: Counter[str] = Counter()

    async def ignore(msg: nats.aio.msg.Msg) -> None:
        seen[(msg.headers or {})[MSG_ID_HEADER]] += 1

    try:
        await nc.subscribe("relaytest.silent", cb=ignore)
        publisher = AckedPublisher(nc)
        await publisher.start()
        try:
            await publisher.publish(_messages("relaytest.silent", 3))
        except PublishError as exc:
            return str(exc), seen
        return "", seen
    finally:
        await nc.close()


def test_unacked_or_refused_publishes_are_sent_again_with_the_same_id(tmp_path, monkeypatch):
    monkeypatch.setattr(publish_io, "ACK_TIMEOUT_S", 0.3)
    server = NatsServer(tmp_path).start()
    try:
        (acked, duplicates), seen = asyncio.run(_error_then_ack(server.url))
        assert (acked, duplicates) == (50, 0)
        assert seen == {f"id-{i}": 2 for i in range(50)}

        error, seen = asyncio.run(_never_acked(server.url))
        attempts = publish_io.PUBLISH_ATTEMPTS
        assert error == f"3 of 3 publishes not acked after {attempts} attempts: no ack within 0.3 s"
        assert seen == {f"id-{i}": attempts for i in range(3)}
    finally:
        server.stop()


async def _publish_until_the_server_dies(server: NatsServer) -> tuple[str, float]:
    nc = await nats.connect(server.url, allow_reconnect=False)
    try:
        await nc.subscribe("relaytest.silent", cb=_ignore)
        publisher = AckedPublisher(nc)
        await publisher.start()
        task = asyncio.create_task(publisher.publish(_messages("relaytest.silent", 3)))
        await asyncio.sleep(0.2)
        server.kill()
        started = time.monotonic()
        try:
            await task
        except nats.errors.Error as exc:
            return type(exc).__name__, time.monotonic() - started
        return "", 0.0
    finally:
        await nc.close()


async def _ignore(msg: nats.aio.msg.Msg) -> None:
    return None


def test_a_lost_connection_fails_the_round_without_waiting_for_the_ack_timeout(tmp_path):
    server = NatsServer(tmp_path).start()
    try:
        error, took = asyncio.run(_publish_until_the_server_dies(server))
    finally:
        server.stop()
    assert error == "ConnectionClosedError"
    assert took < publish_io.ACK_TIMEOUT_S / 2


@pytest.mark.parametrize(
    ("data", "status", "expected"),
    [
        (b'{"stream":"HL_TRADES","seq":7}', None, (False, None)),
        (b'{"stream":"HL_TRADES","seq":7,"duplicate":true}', None, (True, None)),
        (b'{"error":{"code":503,"description":"no quorum"}}', None, (False, "no quorum")),
        (b"", "503", (False, "no stream takes this subject")),
        (b"<html>", None, (False, "unreadable ack b'<html>'")),
    ],
)
def test_acks_are_read_as_stored_duplicate_or_error(data, status, expected):
    ack = publish_io.read_ack(data, status)
    assert (ack.duplicate, ack.error.description if ack.error else None) == expected
