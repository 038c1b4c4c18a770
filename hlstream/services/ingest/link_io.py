"""One websocket connection ("link") of ingest, in its own thread: it connects, subscribes
(paced), pings and replaces a dead feed (core/liveness.py), and reconnects with its own backoff.

- Every frame read is handed, parsed, to the shell's handler exactly once and in order, in the
  link's thread. A call carries a frame and every frame already waiting behind it (up to
  DRAIN_MAX), and vouches for coverage only when it left nothing waiting; a frame of
  BIG_FRAME_TRADES or more goes out without waiting for those behind it.
- The links of a process share (under `Shared.lock`) the new-connections window and the
  client-message budget, both below the venue's per-IP limits.
- The venue closes the whole socket, with no error frame, when a subscription names a coin it
  no longer lists: a link closed within EARLY_CLOSE_S of its last subscribe re-reads the
  listing, drops the coins that are gone (a DELISTED event) and reconnects with the rest.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websocket

from hlstream.common.backoff import Backoff, WindowLimit
from hlstream.common.clock import now_ms
from hlstream.common.config import Settings
from hlstream.common.errors import ProtocolError, TransientError
from hlstream.common.log import EventLog
from hlstream.services.ingest.channels import (
    TRADES,
    RequestLog,
    Sub,
    is_already_subscribed,
    is_early_close,
    unlisted_coins,
)
from hlstream.services.ingest.core.liveness import PONG_TIMEOUT, STALE, Liveness, ReconnectPolicy
from hlstream.services.ingest.core.parse import PING, FrameKind, parse_frame
from hlstream.services.ingest.events import Drained, Event, EventKind, Handler
from hlstream.services.ingest.listing_io import Listing
from hlstream.services.ingest.wsframes import OP_CLOSE, OP_PING, OP_PONG, SocketFrames

RECV_TIMEOUT_S = 0.25
CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 0.2
SUBSCRIBE_PACE_S = 0.02  # at most 50 subscribe messages a second per link
LIMIT_WINDOW_S = 60.0
CONNECTIONS_PER_MINUTE = 30  # the venue's limit per IP
SENDS_PER_MINUTE = 1800  # the venue's limit is 2000 client messages a minute per IP
EARLY_CLOSE_S = 5.0
WS_ERROR_LOG_EVERY_S = 1.0
EARLY_CLOSE_LOG_EVERY_S = 30.0
DRAIN_MAX = 512  # frames read in one go when they are already waiting on the socket
BIG_FRAME_TRADES = 32  # the venue's block bursts: one big frame per coin, all at once
# Reasons a session ends that the venue caused (not our stop, not a stale timer).
SERVER_CLOSES = ("server_close", "connection_closed", "socket_error")
# Reasons a session ends with a silence in which frames may have been lost.
SILENT_DEATHS = (PONG_TIMEOUT, STALE)


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
        default_factory=lambda: WindowLimit(CONNECTIONS_PER_MINUTE, LIMIT_WINDOW_S)
    )
    send_limit: WindowLimit = field(
        default_factory=lambda: WindowLimit(SENDS_PER_MINUTE, LIMIT_WINDOW_S)
    )


class _Stopped(BaseException):
    """The process is stopping: unwind the link."""


class Link:
    """One websocket connection carrying a shard of subscriptions; its `thread` runs it."""

    def __init__(self, index: int, subs: tuple[Sub, ...], shared: Shared) -> None:
        settings = shared.settings
        self.index = index
        self.subs = subs
        self.shared = shared
        self.log = shared.log
        self.policy = ReconnectPolicy(
            Backoff(settings.backoff_base_seconds, settings.backoff_cap_seconds, random.Random()),
            shared.connect_limit,
        )
        self.requests = RequestLog()
        self.ws: websocket.WebSocket | None = None
        self.frames: SocketFrames | None = None  # the connected socket's reader
        self.thread = threading.Thread(target=self._run, name=f"ingest-link-{index}", daemon=True)
        self._last_subscribe_s: float | None = None
        self._acked = 0  # subscriptions acknowledged on the current connection
        self.liveness = Liveness(
            settings.idle_ping_seconds,
            settings.pong_timeout_seconds,
            settings.ping_seconds,
            settings.stale_seconds,
        )
        self._ponged = False  # the frames being drained hold a pong
        self._last_rx_ms = 0  # wall time of the last frame of the current connection

    def backlog_bytes(self) -> int:
        """What the venue sent that this link has not handled yet (any thread may ask)."""
        frames = self.frames
        return 0 if frames is None else frames.backlog_bytes()

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
                    attempt=self.policy.backoff.attempt,
                    delay_ms=int(delay * 1000),
                    reason=reason,
                )
            self._idle(delay)
            self._wait_turn(self.policy.grant)
            reason = self._connect_and_stream()
            self.policy.on_disconnect()
            silent_since_ms = self._last_rx_ms if reason in SILENT_DEATHS else 0
            self._emit(
                Event(EventKind.DISCONNECTED, self.index, recv_ms=silent_since_ms, text=reason)
            )
            closed_s = time.monotonic()
            if reason.startswith(SERVER_CLOSES) and is_early_close(
                closed_s, self._last_subscribe_s, EARLY_CLOSE_S
            ):
                self._drop_unlisted(reason, closed_s)

    def _connect_and_stream(self) -> str:
        settings = self.shared.settings
        self._last_subscribe_s = None
        try:
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
        self._acked = 0
        live = self.liveness
        live.start(time.monotonic())
        self._last_rx_ms = now_ms()
        handle = self.shared.handle
        while not self.shared.halt.is_set():
            now = time.monotonic()
            # Dead, and nothing waiting (after a SIGSTOP, or a VM pause, the frames are in
            # the socket: read them rather than drop them by reconnecting).
            dead = live.verdict(now)
            if dead is not None and not frames.ready():
                silent_ms = int(live.silent_s(now) * 1000)
                self.log.warning("ws_" + dead, link=self.index, silent_ms=silent_ms)
                return dead
            if live.should_ping(now):
                self._send(ws, PING)
                live.on_ping_sent(now)
            try:
                opcode, payload = frames.read()
            except TimeoutError:  # nothing was waiting
                handle(self.index, [], now_ms() if live.vouches() else None)
                continue
            self._ponged = False
            drained = self._drain(ws, frames, opcode, payload)
            live.on_frames(time.monotonic(), self._ponged)
            self._last_rx_ms = now_ms()
            handle(self.index, drained.events, drained.covered_ms if live.vouches() else None)
            if drained.closed:
                return "server_close"
        return "stop"

    def _drain(
        self, ws: websocket.WebSocket, frames: SocketFrames, opcode: int, payload: bytes
    ) -> Drained:
        """This frame's event and those of every frame already waiting behind it."""
        first_ms = now_ms()
        events: list[Event] = []
        for read in range(1, DRAIN_MAX + 1):
            if opcode == OP_CLOSE:
                return Drained(events, None, closed=True)
            if opcode == OP_PING:
                ws.pong(payload)
            elif opcode != OP_PONG:
                event = self._event_of(payload, time.monotonic(), frames.read_us)
                if event is not None:
                    events.append(event)
                    if event.frame is not None and len(event.frame.trades) >= BIG_FRAME_TRADES:
                        self.shared.handle(self.index, events, None)
                        events = []
            if not frames.ready():
                return Drained(events, first_ms, closed=False)
            if read < DRAIN_MAX:
                opcode, payload = frames.read()
        return Drained(events, None, closed=False)  # more is waiting: covered on a later call

    def _event_of(self, payload: bytes, recv_s: float, recv_us: int) -> Event | None:
        """The event one frame makes for the handler; None for a subscription ack, a pong or
        an error frame (handed over on its own by `_on_error`)."""
        try:
            frame = parse_frame(payload)
        except ProtocolError as exc:
            return Event(EventKind.MALFORMED, self.index, text=str(exc))
        kind = frame.kind
        if self.policy.on_frame(recv_s, kind is FrameKind.TRADES or kind is FrameKind.DATA):
            self.log.debug("ws_healthy", link=self.index)
        if kind is FrameKind.SUBSCRIBED:
            self._acked += 1
            if self._acked == len(self.subs):
                self.log.info("ws_subscribed", link=self.index, subscriptions=self._acked)
        elif kind is FrameKind.ERROR:
            self._on_error(frame.error, recv_s)
        elif kind is FrameKind.PONG:
            self._ponged = True
        else:
            return Event(EventKind.FRAME, self.index, frame, recv_us // 1000, recv_us)
        return None

    def _on_error(self, error: str, now_s: float) -> None:
        cause = self.requests.cause_of(error, now_s)
        request, exact = cause if cause is not None else ("", False)
        self._emit(Event(EventKind.ERROR, self.index, text=error))
        if is_already_subscribed(error):
            self.log.info("ws_already_subscribed", link=self.index, request=request)
            return
        self.log.warning_limited(
            "ws_error:" + error[:60],
            WS_ERROR_LOG_EVERY_S,
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
                EARLY_CLOSE_LOG_EVERY_S,
                "ws_closed_after_subscribe",
                link=self.index,
                reason=reason,
                hint="every subscribed coin is still listed",
            )
            return
        self.subs = tuple(sub for sub in self.subs if sub.coin not in gone)
        self._emit(Event(EventKind.DELISTED, self.index, coins=tuple(gone)))

    def _send(self, ws: websocket.WebSocket, text: str) -> None:
        self._wait_turn(self.shared.send_limit.take)
        self.requests.record(time.monotonic(), text)
        ws.send(text)

    def _wait_turn(self, take: Callable[[float], float]) -> None:
        """Idle until `take(now)`, asked under the shared lock, grants a turn (returns 0)."""
        while True:
            with self.shared.lock:
                wait = take(time.monotonic())
            if wait <= 0:
                return
            self._idle(wait)

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
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.settimeout(CLOSE_TIMEOUT_S)
                ws.close(timeout=CLOSE_TIMEOUT_S)
