"""One websocket connection ("link") of ingest, run in its own thread.

A link owns one websocket-client socket and a fixed shard of subscriptions. It connects,
subscribes (paced), sends a JSON ping every `ping_seconds`, replaces a silent (zombie) feed
after `stale_seconds`, reconnects with its own backoff (`reconnect.ReconnectPolicy`), parses
frames with the pure core and hands them, as `Event`s in order, to the shell's handler in
its own thread: no per-frame hand-off to another thread. After each frame it reads every
further frame already waiting on the socket (up to `DRAIN_MAX`), so under load one handler
call (one tape write, one publish per coin) carries many frames. The handler serializes
the links with one lock (ZeroMQ sockets, the tape, the deduper are not thread-safe).

Shared between links (under `Shared.lock`): the 30-connections-a-minute window, the
client-message budget (venue: 2000 a minute per IP) and the exchange listing cache.

Delisted coins: the venue closes the socket without an error frame when a subscription names
a coin it no longer lists, which would take every other subscription of the link down with
it, forever. When a link closes within EARLY_CLOSE_S of its last subscribe, it re-reads
meta/spotMeta (one fetch shared by links closing together) and drops the coins that are gone,
emitting a `delisted` event per coin; then it reconnects with the rest.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgspec
import websocket

from hlstream.common.backoff import Backoff, WindowLimit
from hlstream.common.clock import now_ms
from hlstream.common.config import Settings
from hlstream.common.errors import ProtocolError, TransientError
from hlstream.common.log import EventLog
from hlstream.common.rest_io import InfoClient
from hlstream.common.universe import universe_names
from hlstream.services.ingest.channels import (
    TRADES,
    RequestLog,
    Sub,
    is_already_subscribed,
    is_early_close,
    unlisted_coins,
)
from hlstream.services.ingest.core import PING, Frame, FrameKind, parse_frame
from hlstream.services.ingest.reconnect import ReconnectPolicy
from hlstream.services.ingest.wsframes import OP_CLOSE, OP_PING, OP_PONG, SocketFrames

RECV_TIMEOUT_S = 0.25
CONNECT_TIMEOUT_S = 10.0
SUBSCRIBE_PACE_S = 0.02  # at most 50 subscribe messages a second per link
CONNECTIONS_PER_MINUTE = 30
SENDS_PER_MINUTE = 1800  # venue limit is 2000 client messages a minute per IP
EARLY_CLOSE_S = 5.0
LISTING_MIN_INTERVAL_S = 3.0
DRAIN_MAX = 512  # frames read in one go when they are already waiting on the socket
BIG = 32  # a frame this big is taped and published without waiting for the frames behind
# it (the venue's block bursts: one big frame per coin, all at once)
# Reasons a session ends that the venue caused (not our stop, not a stale timer).
SERVER_CLOSES = ("server_close", "connection_closed", "socket_error")


class EventKind(Enum):
    """What happened on a link (the fields of `Event` each kind fills in brackets)."""

    CONNECTED = "connected"  # [coins]: trade coins just subscribed; next frame is a replay
    FRAME = "frame"  # [frame, recv_ms, recv_us]
    MALFORMED = "malformed"  # [text]
    ERROR = "error"  # [text]: the venue's error frame
    DISCONNECTED = "disconnected"  # [text]: the reason ("stop" on shutdown)
    DELISTED = "delisted"  # [coins]
    HEALTHY = "healthy"  # the connection delivered data for a while: backoff resets
    RETIRED = "retired"  # no subscription left on this link
    CRASHED = "crashed"  # a bug in the link thread


class Event(msgspec.Struct, frozen=True):
    """What a link tells the publishing thread (a Struct: one per frame on the hot path)."""

    kind: EventKind
    link: int
    frame: Frame | None = None
    recv_ms: int = 0
    recv_us: int = 0
    coins: tuple[str, ...] = ()
    text: str = ""


class Listing:
    """The exchange's coin names (meta, spotMeta, builder-dex metas), shared by every link.

        A link asks for a listing no older than the close it is explaining; links closing together
        share one fetch, and such re-fetches are at least `min_interval_s` apart (REST weight ~20
    per request), so a server that keeps closing us for another reason cannot burn the budget.
    """

    def __init__(
        self, info_url: str, dexes: list[str], min_interval_s: float = LISTING_MIN_INTERVAL_S
    ) -> None:
        self.client = InfoClient(info_url, timeout_s=CONNECT_TIMEOUT_S)
        self.dexes = dexes
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._names: set[str] | None = None
        self._fetched_s = float("-inf")
        self._refetched_s = float("-inf")  # last fetch asked for by a link

    def fetch(self) -> tuple[Any, set[str]]:
        """(meta answer, every listed name); raises TransientError or ProtocolError."""
        with self._lock:
            return self._fetch()

    def _fetch(self) -> tuple[Any, set[str]]:
        meta = self.client.post({"type": "meta"})
        spot = self.client.post({"type": "spotMeta"})
        dex_metas = {dex: self.client.post({"type": "meta", "dex": dex}) for dex in self.dexes}
        names = universe_names(meta, spot, dex_metas)
        self._names, self._fetched_s = names, time.monotonic()
        return meta, names

    def since(self, since_s: float) -> set[str] | None:
        """Listed names fetched at or after `since_s`; None while rate-limited.

        Raises TransientError or ProtocolError when the fetch fails.
        """
        with self._lock:
            if self._names is not None and self._fetched_s >= since_s:
                return self._names
            if time.monotonic() - self._refetched_s < self.min_interval_s:
                return None
            self._refetched_s = time.monotonic()
            return self._fetch()[1]

    def close(self) -> None:
        self.client.close()


# The shell's handler: (link index, events in order, covered_ms or None). `covered_ms` says
# that every frame this link received before it is among the events handed over so far.
Handler = Callable[[int, list[Event], int | None], None]


@dataclass
class Shared:
    """State every link of one process shares."""

    settings: Settings
    log: EventLog
    halt: threading.Event
    handle: Handler
    listing: Listing
    lock: threading.Lock = field(default_factory=threading.Lock)
    connect_limit: WindowLimit = field(
        default_factory=lambda: WindowLimit(CONNECTIONS_PER_MINUTE, 60.0)
    )
    send_limit: WindowLimit = field(default_factory=lambda: WindowLimit(SENDS_PER_MINUTE, 60.0))
    connect: Callable[[str], websocket.WebSocket] | None = None


class _Stopped(BaseException):
    """The process is stopping: unwind the link."""


class Link:
    """One websocket connection carrying a shard of subscriptions; `start()` runs it."""

    def __init__(
        self, index: int, subs: tuple[Sub, ...], shared: Shared, rng: random.Random | None = None
    ) -> None:
        settings = shared.settings
        self.index = index
        self.subs = subs
        self.shared = shared
        self.log = shared.log
        self.policy = ReconnectPolicy(
            Backoff(
                settings.backoff_base_seconds, settings.backoff_cap_seconds, rng or random.Random()
            ),
            shared.connect_limit,
        )
        self.requests = RequestLog()
        self.ws: websocket.WebSocket | None = None
        self.frames: SocketFrames | None = None  # the connected socket's reader
        self.thread = threading.Thread(target=self._run, name=f"ingest-link-{index}", daemon=True)
        self._last_subscribe_s: float | None = None

    def start(self) -> None:
        self.thread.start()

    def backlog_bytes(self) -> int:
        """What the venue sent that this link has not handled yet (any thread may ask)."""
        frames = self.frames
        return 0 if frames is None else frames.backlog_bytes()

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)

    # ---- thread body -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except _Stopped:
            pass
        except Exception:  # a bug in a link must stop the process, not go unnoticed
            self.log.exception("link_crash", link=self.index)
            self._emit(Event(EventKind.CRASHED, self.index))
        finally:
            self._close_ws()

    def _loop(self) -> None:
        reason = ""
        while not self.shared.halt.is_set():
            if not self.subs:
                self.log.error("link_retired", link=self.index, reason="every coin was delisted")
                self._emit(Event(EventKind.RETIRED, self.index))
                return
            with self.shared.lock:
                delay = self.policy.delay_s(time.monotonic())
            if reason:
                self.log.warning(
                    "ws_reconnect",
                    link=self.index,
                    attempt=self.policy.attempt,
                    delay_ms=int(delay * 1000),
                    reason=reason,
                )
            self._idle(delay)
            self._wait_for_grant()
            reason = self._connect_and_stream()
            self.policy.on_disconnect()
            self._emit(Event(EventKind.DISCONNECTED, self.index, text=reason))
            closed_s = time.monotonic()
            if reason.startswith(SERVER_CLOSES) and is_early_close(
                closed_s, self._last_subscribe_s, EARLY_CLOSE_S
            ):
                self._drop_unlisted(reason, closed_s)

    def _wait_for_grant(self) -> None:
        while True:
            with self.shared.lock:
                wait = self.policy.grant(time.monotonic())
            if wait <= 0:
                return
            self._idle(wait)

    def _connect_and_stream(self) -> str:
        settings = self.shared.settings
        self._last_subscribe_s = None
        try:
            if self.shared.connect is not None:
                self.ws = self.shared.connect(settings.ws_url)
            else:
                self.ws = websocket.create_connection(
                    settings.ws_url,
                    timeout=CONNECT_TIMEOUT_S,
                    skip_utf8_validation=True,
                    enable_multithread=False,
                )
        except (websocket.WebSocketException, OSError) as exc:
            return f"connect_failed:{type(exc).__name__}"
        self.log.info("ws_connected", link=self.index, subscriptions=len(self.subs))
        try:
            return self._session(self.ws)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return "connection_closed"
        except websocket.WebSocketTimeoutException:
            return "send_timeout"
        except ProtocolError as exc:
            self.log.warning("ws_protocol_error", link=self.index, error=str(exc))
            return "protocol_error"
        except (websocket.WebSocketException, OSError) as exc:
            return f"socket_error:{type(exc).__name__}"
        finally:
            self.frames = None
            self._close_ws()

    def _session(self, ws: websocket.WebSocket) -> str:
        """Subscribe and read until the feed fails or we stop; return why it ended."""
        settings = self.shared.settings
        ws.settimeout(RECV_TIMEOUT_S)
        if ws.sock is None:
            return "connection_closed"
        frames = self.frames = SocketFrames(ws.sock)
        trade_coins = tuple(sub.key for sub in self.subs if sub.kind == TRADES)
        self._emit(Event(EventKind.CONNECTED, self.index, coins=trade_coins))
        for position, sub in enumerate(self.subs):
            if position:
                self._idle(SUBSCRIBE_PACE_S)
            self._last_subscribe_s = time.monotonic()
            self._send(ws, sub.message())
        last_msg = last_ping = time.monotonic()
        acked = 0
        handle = self.shared.handle
        while not self.shared.halt.is_set():
            now = time.monotonic()
            # Silent for too long, and nothing waiting (after a SIGSTOP, or a VM pause, the
            # frames are in the socket: read them rather than drop them by reconnecting).
            if now - last_msg >= settings.stale_seconds and not frames.ready():
                self.log.warning(
                    "ws_stale", link=self.index, silent_ms=int((now - last_msg) * 1000)
                )
                return "stale"
            if now - last_ping >= settings.ping_seconds:
                self._send(ws, PING)
                last_ping = now
            try:
                opcode, payload = frames.read()
            except TimeoutError:
                handle(self.index, [], now_ms())  # nothing was waiting
                continue
            first_ms = now_ms()
            events: list[Event] = []
            for read in range(1, DRAIN_MAX + 1):
                last_msg = time.monotonic()
                if opcode == OP_CLOSE:
                    handle(self.index, events, None)
                    return "server_close"
                if opcode == OP_PING:
                    ws.pong(payload)
                elif opcode != OP_PONG:
                    acked += self._on_payload(payload, last_msg, acked, events, frames.read_us)
                    frame = events[-1].frame if events else None
                    if frame is not None and len(frame.trades) >= BIG:
                        handle(self.index, events, None)  # a big frame goes out now
                        events = []
                if not frames.ready():
                    break  # drained: every frame that arrived before first_ms is in `events`
                if read == DRAIN_MAX:
                    first_ms = 0  # more is waiting: coverage moves on the next call
                    break
                opcode, payload = frames.read()
            handle(self.index, events, first_ms or None)
        return "stop"

    def _on_payload(
        self, payload: bytes, recv_s: float, acked: int, out: list[Event], recv_us: int
    ) -> int:
        """Parse one frame into `out`; return 1 if it acknowledged a subscription."""
        try:
            frame = parse_frame(payload)
        except ProtocolError as exc:
            out.append(Event(EventKind.MALFORMED, self.index, text=str(exc)))
            return 0
        is_data = frame.kind in (FrameKind.TRADES, FrameKind.DATA)
        if self.policy.on_frame(recv_s, is_data):
            out.append(Event(EventKind.HEALTHY, self.index))
        if frame.kind is FrameKind.SUBSCRIBED:
            if acked + 1 == len(self.subs):
                self.log.info("ws_subscribed", link=self.index, subscriptions=acked + 1)
            return 1
        if frame.kind is FrameKind.ERROR:
            self._on_error(frame.error, recv_s)
        elif frame.kind is not FrameKind.PONG:
            out.append(Event(EventKind.FRAME, self.index, frame, recv_us // 1000, recv_us))
        return 0

    # ---- helpers -------------------------------------------------------------------------

    def _on_error(self, error: str, now_s: float) -> None:
        cause = self.requests.cause_of(error, now_s)
        request, exact = cause if cause is not None else ("", False)
        self._emit(Event(EventKind.ERROR, self.index, text=error))
        if is_already_subscribed(error):
            self.log.info("ws_already_subscribed", link=self.index, request=request)
            return
        self.log.warning_limited(
            "ws_error:" + error[:60],
            1.0,
            "ws_error",
            link=self.index,
            text=error[:500],
            request=request[:300] or "unknown",
            exact=exact,
        )

    def _drop_unlisted(self, reason: str, closed_s: float) -> None:
        """After an early close: re-read the listing and drop this link's delisted coins."""
        try:
            listed = self.shared.listing.since(closed_s)
        except (TransientError, ProtocolError) as exc:
            self.log.warning("listing_unavailable", link=self.index, error=str(exc)[:200])
            return
        if listed is None:
            return  # fetched moments ago; the next early close asks again
        gone = unlisted_coins(self.subs, listed)
        if not gone:
            self.log.warning_limited(
                f"early_close:{self.index}",
                30.0,
                "ws_closed_after_subscribe",
                link=self.index,
                reason=reason,
                hint="every subscribed coin is still listed",
            )
            return
        self.subs = tuple(sub for sub in self.subs if sub.coin not in gone)
        self._emit(Event(EventKind.DELISTED, self.index, coins=tuple(gone)))

    def _send(self, ws: websocket.WebSocket, text: str) -> None:
        while True:
            with self.shared.lock:
                now = time.monotonic()
                wait = self.shared.send_limit.wait_s(now)
                if wait <= 0:
                    self.shared.send_limit.record(now)
                    break
            self._idle(wait)
        self.requests.record(time.monotonic(), text)
        ws.send(text)

    def _emit(self, event: Event) -> None:
        self.shared.handle(self.index, [event], None)

    def _idle(self, seconds: float) -> None:
        """Sleep `seconds`; raise _Stopped as soon as the process is stopping."""
        if seconds > 0 and self.shared.halt.wait(seconds):
            raise _Stopped()
        if self.shared.halt.is_set():
            raise _Stopped()

    def _close_ws(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.settimeout(0.2)
                ws.close(timeout=0.2)
            except (websocket.WebSocketException, OSError):
                pass
