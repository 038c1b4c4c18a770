"""The JetStream side of the relay: connect, create the streams, read ids back, publish.

Every publish carries `Nats-Msg-Id` and is acknowledged by the server before the relay
counts it; the in-flight window is bounded (publish_io.MAX_IN_FLIGHT), so a slow server slows
only the relay, never the pipeline (which writes the tape regardless).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from hlstream.common.config import Settings
from hlstream.common.sinks import SinkSecrets
from hlstream.services.relay.core import (
    BAR_PREFIX,
    BARS_STREAM,
    GAP_PREFIX,
    MSG_ID_HEADER,
    TRADE_PREFIX,
    TRADES_STREAM,
    Outgoing,
)
from hlstream.services.relay.publish_io import AckedPublisher

CONNECT_TIMEOUT_S = 3
READ_BACK_BATCH = 2_048
READ_BACK_WAIT_S = 2.0
DAY_S = 86_400

NatsError = (
    nats.errors.Error,
    nats.js.errors.Error,
    asyncio.TimeoutError,
    OSError,
)


def stream_configs(
    replicas: int, tape_days: int, duplicate_window_s: float
) -> list[api.StreamConfig]:
    """HL_TRADES and HL_BARS: file storage, kept as long as the tape (`tape_days`)."""
    common: dict[str, Any] = dict(
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        max_age=float(tape_days * DAY_S),
        duplicate_window=duplicate_window_s,
        allow_direct=True,
    )
    return [
        api.StreamConfig(
            name=TRADES_STREAM, subjects=[TRADE_PREFIX + ">", GAP_PREFIX + ">"], **common
        ),
        api.StreamConfig(name=BARS_STREAM, subjects=[BAR_PREFIX + ">"], **common),
    ]


def _tls_context(ca_file: str) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


class NatsSink:
    """One connection to the JetStream cluster; all methods raise a `NatsError` on failure."""

    def __init__(
        self, settings: Settings, secrets: SinkSecrets, on_event: Callable[[str, str], None]
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._on_event = on_event  # (event, detail): the shell logs and counts
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._publisher: AckedPublisher | None = None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Connect (one attempt; the client then reconnects by itself) and create the streams."""
        s = self._settings
        options: dict[str, Any] = dict(
            servers=[url.strip() for url in s.nats_url.split(",")],
            connect_timeout=CONNECT_TIMEOUT_S,
            # The relay reconnects by itself (shell.py), reading the stream back each time.
            allow_reconnect=False,
            name="hlstream-relay",
            # Subjects are built from encoded tokens (core.encode_token): valid by construction.
            skip_subject_validation=True,
            error_cb=self._error,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
        )
        if s.nats_user:
            options.update(user=s.nats_user, password=self._secrets.nats_password)
        if self._secrets.nats_token:
            options["token"] = self._secrets.nats_token
        if s.nats_creds_file:
            options["user_credentials"] = s.nats_creds_file
        tls = _tls_context(s.nats_tls_ca_file)
        if tls is not None:
            options["tls"] = tls
        nc = await _connect_once(options)
        self._nc = nc
        self._js = nc.jetstream()
        await self._ensure_streams()
        self._publisher = AckedPublisher(nc)
        await self._publisher.start()

    async def _ensure_streams(self) -> None:
        assert self._js is not None
        s = self._settings
        for config in stream_configs(s.nats_replicas, s.tape_days, s.nats_duplicate_window_seconds):
            assert config.name is not None
            try:
                await self._js.stream_info(config.name)
            except nats.js.errors.NotFoundError:
                await self._js.add_stream(config)
                self._on_event("stream_created", config.name)

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc, self._js, self._publisher = self._nc, None, None, None
            with contextlib.suppress(*NatsError):
                await nc.close()

    async def read_ids(self, stream: str, subjects: list[str], start_ms: int) -> set[str]:
        """Every msg id stored on `subjects` (wildcards allowed) since `start_ms` (the
        server's storage time), read headers only through an ephemeral pull consumer."""
        assert self._js is not None
        info = await self._js.stream_info(stream)
        if info.state.messages == 0:
            return set()
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_TIME,
            opt_start_time=datetime.fromtimestamp(start_ms / 1000, tz=UTC),
            ack_policy=api.AckPolicy.NONE,
            headers_only=True,
            filter_subjects=subjects,
            inactive_threshold=60.0,
        )
        sub = await self._js.pull_subscribe(subjects[0], stream=stream, config=config)
        ids: set[str] = set()
        try:
            while True:
                try:
                    msgs = await sub.fetch(READ_BACK_BATCH, timeout=READ_BACK_WAIT_S)
                except nats.errors.TimeoutError:
                    return ids  # nothing (more) on the subject since start_ms
                pending = 1
                for msg in msgs:
                    msg_id = (msg.headers or {}).get(MSG_ID_HEADER)
                    if msg_id:
                        ids.add(msg_id)
                    pending = msg.metadata.num_pending
                if pending == 0:
                    return ids
        finally:
            with contextlib.suppress(*NatsError):
                await sub.unsubscribe()

    async def publish(self, messages: Sequence[Outgoing]) -> tuple[int, int]:
        """Publish `messages` with their ids and wait for every ack.

        Returns (acked, duplicates the server dropped). Raises when a message is still not
        acked after `PUBLISH_ATTEMPTS`: the caller then keeps its progress where it was.
        """
        assert self._publisher is not None
        return await self._publisher.publish(messages)

    async def _error(self, exc: Exception) -> None:
        self._on_event("nats_error", str(exc) or type(exc).__name__)

    async def _disconnected(self) -> None:
        self._on_event("nats_disconnected", "")

    async def _reconnected(self) -> None:
        self._on_event("nats_reconnected", "")


async def _connect_once(options: dict[str, Any]) -> Client:
    """One connection attempt: the client's own initial retry loop is switched off."""
    nc = Client()
    await nc.connect(**options)
    return nc
