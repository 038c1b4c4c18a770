"""Tap hlstream's NATS JetStream streams from any host: the same `TapMessage`s as the local
bus tap (hlstream/tap.py), from the streams the relay stage fills (docs/scale-out.md):

    from hlstream.tap import Tap
    for msg in Tap.nats("nats://n1:4222", ["trade.BTC|"], since_ms=0):
        print(msg.topic, msg.data)

Topics are the bus's: "trade.BTC|", "gap.BTC|", "bar.1m.BTC|" (one coin), "trade." or
"bar.1m." (every coin), "bar.*.BTC|" (one coin, every interval). A trade arrives as a batch
of one (`data["trades"]`, the relay's payload); a bar's `complete` is its `exact` flag, its
`trades` the relay's count from the tape (None where unknown), and `revision` orders the
versions of one window.
`event` is "replay" for messages stored before the tap started, else "ok"; an ordered
consumer resumes where it was after a reconnect, so `lost` is always 0.

Needs nats-py (`pip install 'hlstream[sinks]'`), imported on first use. The tap runs the
client's event loop in a thread of its own, so `receive` is blocking like `Tap.receive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypedDict

import msgpack

from hlstream.tap import TapError, TapMessage, interval_problem

TRADES_STREAM = "HL_TRADES"
BARS_STREAM = "HL_BARS"
_SUBJECT_PREFIX = {"trade": "hl.trades.", "gap": "hl.gaps.", "bar": "hl.bars."}
_KIND_OF_SUBJECT = {"trades": "trade", "gaps": "gap", "bars": "bar"}
_STREAM_OF_KIND = {"trade": TRADES_STREAM, "gap": TRADES_STREAM, "bar": BARS_STREAM}
CONNECT_WAIT_S = 5.0  # the longest `JetStreamTap(...)` tries the servers before it gives up
CONNECT_ROUNDS = 2  # ... or until each server failed this many times
CONNECT_TIMEOUT_S = 2  # one connection attempt to one server
RECONNECT_WAIT_S = 0.5  # between attempts, once the tap was up
SERVER_TIMEOUT_S = 5.0  # one request to the server (stream info, consumer creation)
RECEIVE_QUEUE = 10_000  # messages held for a slow reader; then the server waits (flow control)
QUEUE_FULL_WAIT_S = 0.01  # a full queue is re-checked this often
HEARTBEAT_S = 1.0  # the server's idle heartbeat: two missed, and the consumer is re-created
TOPIC_END = "|"

# encode_token is a copy of hlstream.services.relay.core's, since this file imports nothing
# from hlstream but tap.py; tests/unit/test_tap_nats_topics.py holds the two equal.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SAFE_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+\Z")


def encode_token(coin: str) -> str:
    """`coin` as one subject token: as is when `[A-Za-z0-9_-]` only, else each other byte of
    its UTF-8 form (and `%`) as `%XX`."""
    if _SAFE_TOKEN_RE.match(coin):
        return coin
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in coin.encode("utf-8"))


def decode_token(token: str) -> str:
    """Inverse of `encode_token`; ValueError for a token it could not have produced."""
    data = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            data.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            data.extend(token[i].encode("utf-8"))
            i += 1
    coin = data.decode("utf-8")
    if encode_token(coin) != token:
        raise ValueError(f"subject token {token[:80]!r} is not an encoded coin")
    return coin


def shown_url(url: str) -> str:
    """`url` (a comma list) with any user:password written inside it replaced by `***`."""
    return re.sub(r"//[^/@,]*@", "//***@", url)


def subject_of(prefix: str) -> tuple[str, str]:
    """(stream, subject filter) for a bus topic prefix; TapError when JetStream has no such
    topic or the prefix names part of a coin (pure)."""
    kind, dot, rest = prefix.partition(".")
    if kind not in _SUBJECT_PREFIX or not dot:
        raise TapError(f"cannot tap {prefix!r} on JetStream: it holds trade., gap. and bar. only")
    subject = _SUBJECT_PREFIX[kind]
    if kind == "bar" and rest:
        label, dot, rest = rest.partition(".")
        problem = None if label == "*" else interval_problem(label)
        if problem or not dot:
            raise TapError(f"cannot tap {prefix!r}: {problem or 'name an interval, then a dot'}")
        subject += label + "."
    if not rest:
        return _STREAM_OF_KIND[kind], subject + ">"
    if not rest.endswith(TOPIC_END) or rest == TOPIC_END:
        raise TapError(f"cannot tap {prefix!r} on JetStream: end a coin name with {TOPIC_END!r}")
    return _STREAM_OF_KIND[kind], subject + encode_token(rest[: -len(TOPIC_END)])


def message_of(subject: str, payload: bytes, event: str) -> TapMessage:
    """The bus-shaped message for one stream message; ValueError when it is malformed (pure)."""
    tokens = subject.split(".")
    kind = _KIND_OF_SUBJECT.get(tokens[1]) if len(tokens) in (3, 4) else None
    if tokens[0] != "hl" or kind is None or (kind == "bar") != (len(tokens) == 4):
        raise ValueError(f"not an hlstream subject: {subject[:80]!r}")
    coin = decode_token(tokens[-1])
    data = msgpack.unpackb(payload, raw=False)
    if not isinstance(data, dict) or data.get("coin") != coin:
        raise ValueError(f"payload on {subject[:80]!r} is not a map of coin {coin!r}")
    if kind == "trade":
        trades = {"type": "trades", "coin": coin, "trades": [data]}
        return TapMessage(f"trade.{coin}{TOPIC_END}", trades, event, 0)
    if kind == "gap":
        return TapMessage(f"gap.{coin}{TOPIC_END}", {"type": "gap", **data}, event, 0)
    bar = {"type": "bar", **data, "complete": data.get("exact") is True}
    return TapMessage(f"bar.{tokens[2]}.{coin}{TOPIC_END}", bar, event, 0)


class ConnectOptions(TypedDict, total=False):
    """The keyword arguments of nats-py's `Client.connect` the tap sets."""

    servers: list[str]
    name: str
    connect_timeout: int
    max_reconnect_attempts: int
    reconnect_time_wait: float
    user: str
    password: str
    token: str
    user_credentials: str
    tls: ssl.SSLContext


def _connect_options(
    url: str, user: str, password: str, token: str, creds_file: str, tls_ca_file: str
) -> ConnectOptions:
    options = ConnectOptions(
        servers=[server.strip() for server in url.split(",") if server.strip()],
        name="hlstream-tap",
        connect_timeout=CONNECT_TIMEOUT_S,
        max_reconnect_attempts=-1,  # after it is up, the tap waits out a server's restart
        reconnect_time_wait=RECONNECT_WAIT_S,
    )
    if user:
        options["user"], options["password"] = user, password
    if token:
        options["token"] = token
    if creds_file:
        options["user_credentials"] = creds_file
    if tls_ca_file:
        options["tls"] = ssl.create_default_context(cafile=tls_ca_file)
    return options


class JetStreamTap:
    """Ephemeral ordered consumers on HL_TRADES / HL_BARS, yielding bus-shaped messages:
    those stored since `since_ms` (epoch ms, the server's storage time) first, else only new
    ones. Raises `TapError` at once, in one line, when nothing can arrive."""

    def __init__(
        self,
        url: str,
        prefixes: list[str],
        timeout_ms: int | None = None,
        *,
        since_ms: int | None = None,
        user: str = "",
        password: str = "",
        token: str = "",
        creds_file: str = "",
        tls_ca_file: str = "",
    ):
        subjects: dict[str, list[str]] = {}
        for prefix in prefixes or ["trade.", "gap.", "bar."]:
            stream, subject = subject_of(prefix)
            if subject not in subjects.setdefault(stream, []):
                subjects[stream].append(subject)
        if since_ms is not None and (type(since_ms) is not int or since_ms < 0):
            raise TapError(f"since_ms {since_ms!r} is not a time in epoch ms")
        options = _connect_options(url, user, password, token, creds_file, tls_ca_file)
        self.url = shown_url(url)
        self.timeout_ms = timeout_ms
        self.malformed = 0
        self.lost = 0
        self._queue: queue.Queue[tuple[str, bytes, bool]] = queue.Queue(RECEIVE_QUEUE)
        self._replay_upto: dict[str, int] = {}  # stream -> last sequence when the tap started
        self._delivered: dict[str, int] = {}  # stream -> last sequence queued (or skipped)
        self._since = datetime.fromtimestamp((since_ms or 0) / 1000, tz=UTC)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._nc: Any = None
        try:
            self._call(self._open(options, subjects, since_ms), CONNECT_WAIT_S + 30)
        except BaseException:
            self.close()
            raise

    def _call(self, coro: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _open(
        self, options: ConnectOptions, subjects: dict[str, list[str]], since_ms: int | None
    ) -> None:
        try:
            import nats.errors
            import nats.js.errors
            from nats.aio.client import Client
            from nats.js import api
        except ImportError:
            raise TapError("a JetStream tap needs nats-py: pip install 'hlstream[sinks]'") from None
        self._nc = Client()
        await self._connect(options)
        js = self._nc.jetstream(timeout=SERVER_TIMEOUT_S)
        for stream, filters in subjects.items():
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                raise TapError(f"no {stream} stream at {self.url}: is a relay running?") from None
            except (TimeoutError, nats.errors.Error) as exc:
                raise TapError(
                    f"NATS at {self.url} answers no JetStream request: {_why(exc)}"
                ) from None
            self._replay_upto[stream] = info.state.last_seq
            self._delivered[stream] = info.state.last_seq if since_ms is None else 0
            config = api.ConsumerConfig(filter_subjects=filters, inactive_threshold=300.0)
            if since_ms is None:
                config.deliver_policy = api.DeliverPolicy.NEW
            else:
                config.deliver_policy = api.DeliverPolicy.BY_START_TIME
                config.opt_start_time = self._since
            try:
                await js.subscribe(
                    filters[0],
                    stream=stream,
                    config=config,
                    cb=self._deliver,
                    ordered_consumer=True,
                    idle_heartbeat=HEARTBEAT_S,
                )
            except (TimeoutError, nats.errors.Error) as exc:
                raise TapError(
                    f"{stream} at {self.url} refused the consumer: {_why(exc)}"
                ) from None
            # nats-py re-creates a lost ordered consumer (a server restart) from this very
            # config with a start sequence; the server refuses a start time beside it.
            config.opt_start_time = None

    async def _connect(self, options: ConnectOptions) -> None:
        from nats.errors import AuthorizationError

        errors: list[Exception] = []
        refused, gave_up = asyncio.Event(), asyncio.Event()

        async def on_error(exc: Exception) -> None:
            errors.append(exc)
            if isinstance(exc, AuthorizationError) or "uthorization" in str(exc):
                refused.set()
            elif len(errors) >= CONNECT_ROUNDS * len(options["servers"]):
                gave_up.set()

        connect = asyncio.ensure_future(self._nc.connect(**options, error_cb=on_error))
        waiting = [asyncio.ensure_future(event.wait()) for event in (refused, gave_up)]
        await asyncio.wait(
            {connect, *waiting}, timeout=CONNECT_WAIT_S, return_when="FIRST_COMPLETED"
        )
        for task in waiting:
            task.cancel()
        if connect.done() and connect.exception() is None:
            return
        connect.cancel()
        with contextlib.suppress(BaseException):
            await connect
        last = _why(errors[-1]) if errors else f"no answer within {CONNECT_WAIT_S:.0f}s"
        if refused.is_set():
            raise TapError(f"NATS at {self.url} refused the credentials: {last}")
        raise TapError(f"cannot reach NATS at {self.url}: {last}")

    async def _deliver(self, msg: Any) -> None:
        # Waiting here holds back this consumer's flow-control reply, so the server pauses.
        while self._queue.full():
            await asyncio.sleep(QUEUE_FULL_WAIT_S)
        meta, stream = msg.metadata, msg.metadata.stream
        # A re-created consumer starts after the last sequence nats-py saw (from the stream's
        # first when it saw none): deliver each sequence once, never one before the start.
        if meta.sequence.stream <= self._delivered[stream] or meta.timestamp < self._since:
            return
        self._delivered[stream] = meta.sequence.stream
        replayed = meta.sequence.stream <= self._replay_upto[stream]
        self._queue.put_nowait((msg.subject, msg.data, replayed))

    async def _shut_down(self) -> None:
        """Close the connection, then end the client's background tasks (consumer heartbeat
        checks outlive it), so none is destroyed pending."""
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def receive(self) -> TapMessage | None:
        """The next valid message, or None when `timeout_ms` passes without one."""
        timeout = None if self.timeout_ms is None else self.timeout_ms / 1000
        while True:
            try:
                subject, payload, replayed = self._queue.get(timeout=timeout)
            except queue.Empty:
                return None
            try:
                return message_of(subject, payload, "replay" if replayed else "ok")
            except (ValueError, UnicodeDecodeError, msgpack.UnpackException):
                self.malformed += 1

    def close(self) -> None:
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self._call(self._shut_down(), SERVER_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(SERVER_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    def __iter__(self) -> Iterator[TapMessage]:
        """The messages until `receive` times out."""
        return iter(self.receive, None)


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).strip("'\"") or type(exc).__name__
    return text[:200]
