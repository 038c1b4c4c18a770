"""IO shell of ingest: one websocket to the exchange, trades out on the ZeroMQ bus.

Single-threaded loop around `core`: `recv` with a short socket timeout so the same thread
sends JSON pings, detects a stale (zombie) feed, publishes a status heartbeat once a second,
persists dedupe state every ~2 s and polls the StopFlag. Reconnects use capped exponential
backoff with jitter plus a limit of 30 new connections a minute (the venue's per-IP limit);
the attempt count resets only after a connection has delivered data for ~30 s.

Files in `run_dir`, both replaced atomically: `ingest-dedupe.msgpack` (dedupe keys, survives
restarts; a corrupt file is logged and ignored) and `ingest-status.json` (the heartbeat,
written through common/status_io and read by `hlstream status`).
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

import msgpack
import websocket
import zmq

from common.atomic_io import write_atomic
from common.backoff import Backoff, WindowLimit
from common.bus_io import Publisher
from common.config import Settings
from common.errors import ProtocolError, TransientError
from common.lifecycle_io import StopFlag
from common.log import EventLog
from common.messages import (
    Gap,
    Trade,
    gap_to_wire,
    gap_topic,
    status_topic,
    trade_to_wire,
    trade_topic,
)
from common.rest_io import InfoClient
from common.status_io import write_status
from services.ingest.core import (
    PING,
    Deduper,
    FrameKind,
    ReplayCheck,
    check_coins,
    dex_prefixes,
    parse_frame,
    subscribe_message,
    universe_names,
)

SERVICE = "ingest"
RECV_TIMEOUT_S = 0.5
CONNECT_TIMEOUT_S = 10.0
HEALTHY_AFTER_S = 30.0
STATUS_EVERY_S = 1.0
PERSIST_EVERY_S = 2.0
SUMMARY_EVERY_S = 60.0
SUBSCRIBE_PACE_S = 0.02  # at most 50 subscribe messages a second
CONNECTIONS_PER_MINUTE = 30
SENDS_PER_MINUTE = 1800  # venue limit is 2000 client messages a minute per IP
STATE_FILE = "ingest-dedupe.msgpack"


class _Interrupted(BaseException):
    """Raised by a signal handler to abort a blocking connect or HTTP request on SIGTERM."""


@contextmanager
def _interruptible(stop: StopFlag) -> Iterator[None]:
    """While inside, SIGTERM/SIGINT also abort the blocking call in progress."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (signal.SIGTERM, signal.SIGINT)
    previous: dict[int, Any] = {signum: signal.getsignal(signum) for signum in signums}

    def handler(signum: int, frame: FrameType | None) -> None:
        old = previous[signum]
        if callable(old):
            old(signum, frame)
        stop.set()
        raise _Interrupted()

    for signum in signums:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum in signums:
            signal.signal(signum, previous[signum])


@dataclass
class Counters:
    reconnects: int = 0
    trades: int = 0
    duplicates: int = 0
    too_old: int = 0
    malformed: int = 0
    rejected: int = 0
    gaps: int = 0


class Ingest:
    """The ingest run loop; `run()` returns when the StopFlag is set."""

    def __init__(
        self, settings: Settings, stop: StopFlag, log: EventLog, context: zmq.Context[Any]
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.log = log
        self.context = context
        self.deduper = Deduper()
        self.replay = ReplayCheck()
        self.counters = Counters()
        self.publisher: Publisher | None = None
        self.ws: websocket.WebSocket | None = None
        self.backoff = Backoff(
            settings.backoff_base_seconds, settings.backoff_cap_seconds, random.Random()
        )
        self.connect_limit = WindowLimit(CONNECTIONS_PER_MINUTE, 60.0)
        self.send_limit = WindowLimit(SENDS_PER_MINUTE, 60.0)
        self.state_path = settings.run_dir / STATE_FILE
        self._connected = False
        self._dirty = False
        self._msgs = 0
        self._msgs_at_status = 0
        self._next_status = 0.0
        self._next_persist = 0.0
        self._next_summary = time.monotonic() + SUMMARY_EVERY_S
        self._last_status_at = time.monotonic()

    # ---- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        """Load state, validate coins, stream until stopped; always save state on the way out."""
        self._load_state()
        self.publisher = Publisher(self.context, self.settings.trades_endpoint)
        try:
            self._tick(time.monotonic())
            if self.settings.validate_coins:
                self._validate_coins()
            self._stream()
        except _Interrupted:
            pass
        finally:
            self._close_ws()
            self._connected = False
            self._save_state()
            self._publish_status()
            self.publisher.close()
            self.log.info("stopped", signal=self.stop.signal_name, **asdict(self.counters))

    def _idle(self, seconds: float) -> bool:
        """Wait `seconds` while keeping heartbeats going; True if the StopFlag was set."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return False
            self._tick(now)
            self.stop.wait(min(0.2, deadline - now))
        return True

    # ---- startup coin validation -------------------------------------------------------

    def _validate_coins(self) -> None:
        """Check every coin against meta/spotMeta; retry while the network is down."""
        client = InfoClient(self.settings.info_url, timeout_s=CONNECT_TIMEOUT_S)
        backoff = Backoff(
            self.settings.backoff_base_seconds, self.settings.backoff_cap_seconds, random.Random()
        )
        try:
            while not self.stop.is_set():
                try:
                    with _interruptible(self.stop):
                        meta = client.post({"type": "meta"})
                        spot = client.post({"type": "spotMeta"})
                        dexes = {
                            dex: client.post({"type": "meta", "dex": dex})
                            for dex in dex_prefixes(self.settings.coins)
                        }
                    allowed = universe_names(meta, spot, dexes)
                except (TransientError, ProtocolError) as exc:
                    retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
                    delay = backoff.next_delay(floor_s=retry_after or 0.0)
                    self.log.warning(
                        "meta_unavailable",
                        attempt=backoff.attempt,
                        delay_ms=int(delay * 1000),
                        error=str(exc),
                    )
                    self._idle(delay)
                    continue
                check_coins(self.settings.coins, allowed)
                self.log.info("coins_validated", coins=len(self.settings.coins))
                return
        finally:
            client.close()

    # ---- connection management -----------------------------------------------------------

    def _stream(self) -> None:
        reason = ""
        first = True
        while not self.stop.is_set():
            now = time.monotonic()
            if first:
                delay = self.connect_limit.wait_s(now)
            else:
                self.counters.reconnects += 1
                delay = max(self.backoff.next_delay(), self.connect_limit.wait_s(now))
                self.log.warning(
                    "ws_reconnect",
                    attempt=self.backoff.attempt,
                    delay_ms=int(delay * 1000),
                    reason=reason,
                )
            first = False
            if self._idle(delay):
                return
            self.connect_limit.record(time.monotonic())
            try:
                with _interruptible(self.stop):
                    self.ws = websocket.create_connection(
                        self.settings.ws_url,
                        timeout=CONNECT_TIMEOUT_S,
                        skip_utf8_validation=True,
                        enable_multithread=False,
                    )
            except (websocket.WebSocketException, OSError) as exc:
                reason = f"connect_failed:{type(exc).__name__}"
                continue
            self.log.info("ws_connected", url=self.settings.ws_url)
            try:
                reason = self._session(self.ws)
            finally:
                self._connected = False
                self._close_ws()

    def _close_ws(self) -> None:
        if self.ws is not None:
            try:
                self.ws.settimeout(0.2)
                self.ws.close(timeout=0.2)
            except (websocket.WebSocketException, OSError):
                pass
            self.ws = None

    def _send(self, ws: websocket.WebSocket, text: str) -> None:
        wait = self.send_limit.wait_s(time.monotonic())
        if wait > 0:
            self._idle(wait)
        self.send_limit.record(time.monotonic())
        ws.send(text)

    def _session(self, ws: websocket.WebSocket) -> str:
        """Subscribe and read until the feed fails or we stop; return why it ended."""
        settings = self.settings
        try:
            ws.settimeout(RECV_TIMEOUT_S)
            self.replay.on_connect(settings.coins)
            for index, coin in enumerate(settings.coins):
                if index and self._idle(SUBSCRIBE_PACE_S):
                    return "stop"
                self._send(ws, subscribe_message(coin))
            self._connected = True
            connected_at = last_msg = last_ping = time.monotonic()
            acked = 0
            data_seen = False
            healthy = False
            while not self.stop.is_set():
                now = time.monotonic()
                if now - last_msg >= settings.stale_seconds:
                    self.log.warning("ws_stale", silent_ms=int((now - last_msg) * 1000))
                    return "stale"
                if now - last_ping >= settings.ping_seconds:
                    self._send(ws, PING)
                    last_ping = now
                if not healthy and data_seen and now - connected_at >= HEALTHY_AFTER_S:
                    healthy = True
                    self.backoff.reset()
                self._tick(now)
                try:
                    opcode, payload = ws.recv_data()
                except websocket.WebSocketTimeoutException:
                    continue
                last_msg = time.monotonic()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return "server_close"
                kind = self._handle(payload)
                if kind is FrameKind.TRADES:
                    data_seen = True
                elif kind is FrameKind.SUBSCRIBED:
                    acked += 1
                    if acked == len(settings.coins):
                        self.log.info("ws_subscribed", coins=acked)
            return "stop"
        except websocket.WebSocketConnectionClosedException:
            return "connection_closed"
        except websocket.WebSocketTimeoutException:
            return "send_timeout"
        except (websocket.WebSocketException, OSError) as exc:
            return f"socket_error:{type(exc).__name__}"

    # ---- frames --------------------------------------------------------------------------

    def _handle(self, payload: bytes | str) -> FrameKind | None:
        """Classify one frame and act on it; never raises for bad frames."""
        self._msgs += 1
        try:
            frame = parse_frame(payload)
        except ProtocolError as exc:
            self.counters.malformed += 1
            self.log.warning_limited(
                "malformed", 10.0, "ws_malformed", error=str(exc), malformed=self.counters.malformed
            )
            return None
        if frame.kind is FrameKind.TRADES:
            if frame.rejected:
                self.counters.rejected += frame.rejected
                self.log.warning_limited(
                    "rejected", 10.0, "trades_rejected", rejected=self.counters.rejected
                )
            self._on_trades(frame.trades)
        elif frame.kind is FrameKind.ERROR:
            self.log.warning_limited(
                "ws_error:" + frame.error[:60], 1.0, "ws_error", text=frame.error[:500]
            )
        elif frame.kind is FrameKind.SUBSCRIBED:
            self.log.debug("ws_ack", data=json.dumps(frame.data)[:200])
        elif frame.kind is FrameKind.UNKNOWN:
            self.log.warning_limited(
                "unknown:" + frame.channel[:40], 60.0, "ws_unknown_channel", channel=frame.channel
            )
        return frame.kind

    def _on_trades(self, trades: tuple[Trade, ...]) -> None:
        by_coin: dict[str, list[Trade]] = {}
        for trade in trades:
            by_coin.setdefault(trade.coin, []).append(trade)
        now_ms = int(time.time() * 1000)
        assert self.publisher is not None
        for coin, batch in by_coin.items():
            last_ms = self.deduper.newest_ms(coin)
            known = self.deduper.count_known(batch) if self.replay.is_pending(coin) else 0
            too_old_before = self.deduper.too_old
            fresh, duplicates = self.deduper.admit(batch)
            too_old = self.deduper.too_old - too_old_before
            gap = self.replay.check(coin, batch, known, last_ms)
            if gap is not None:
                self._publish_gap(gap)
            if fresh:
                body = {
                    "coin": coin,
                    "recv_ms": now_ms,
                    "trades": [trade_to_wire(t) for t in fresh],
                }
                self.publisher.publish(trade_topic(coin), "trades", body)
                self._dirty = True
            self.counters.trades += len(fresh)
            self.counters.duplicates += duplicates
            if too_old:
                self.counters.too_old += too_old
                self.log.warning_limited(
                    "too_old:" + coin, 10.0, "trades_too_old", coin=coin, too_old=too_old
                )

    def _publish_gap(self, gap: Gap) -> None:
        assert self.publisher is not None
        self.counters.gaps += 1
        self.log.warning(
            "gap", coin=gap.coin, from_ms=gap.from_ms, to_ms=gap.to_ms, reason=gap.reason
        )
        self.publisher.publish(gap_topic(gap.coin), "gap", gap_to_wire(gap))

    # ---- periodic work -------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            self._publish_status()
        if self._dirty and now >= self._next_persist:
            self._next_persist = now + PERSIST_EVERY_S
            self._save_state()
        if now >= self._next_summary:
            self._next_summary = now + SUMMARY_EVERY_S
            self.log.info(
                "ingest_summary",
                connected=self._connected,
                keys=self.deduper.key_count(),
                **asdict(self.counters),
            )

    def status(self) -> dict[str, Any]:
        """The heartbeat body (also written to ingest-status.json)."""
        now = time.monotonic()
        elapsed = max(now - self._last_status_at, 1e-3)
        rate = (self._msgs - self._msgs_at_status) / elapsed
        self._last_status_at = now
        self._msgs_at_status = self._msgs
        body: dict[str, Any] = {
            "service": SERVICE,
            "ts_ms": int(time.time() * 1000),
            "connected": self._connected,
            "msgs_per_s": round(rate, 2),
            "last_trade_ms": self.deduper.newest_by_coin(),
        }
        body.update(asdict(self.counters))
        return body

    def _publish_status(self) -> None:
        body = self.status()
        if self.publisher is not None:
            self.publisher.publish(status_topic(SERVICE), "status", body)
        write_status(self.settings.run_dir, SERVICE, body)

    def _save_state(self) -> None:
        try:
            data = msgpack.packb(self.deduper.to_state(), use_bin_type=True)
            write_atomic(self.state_path, data)
        except OSError as exc:
            self.log.warning_limited("state_write", 60.0, "dedupe_save_failed", error=str(exc))
            return
        self._dirty = False

    def _load_state(self) -> None:
        try:
            data = self.state_path.read_bytes()
        except FileNotFoundError:
            self.log.info("dedupe_state_absent", path=str(self.state_path))
            return
        except OSError as exc:
            self.log.warning("dedupe_state_unreadable", path=str(self.state_path), error=str(exc))
            return
        try:
            state = msgpack.unpackb(data, raw=False, strict_map_key=False)
            self.deduper = Deduper.from_state(state)
        except (ValueError, TypeError, msgpack.UnpackException, ProtocolError) as exc:
            self.log.warning(
                "dedupe_state_corrupt", path=str(self.state_path), error=f"{exc}"[:200]
            )
            return
        self.log.info(
            "dedupe_state_loaded",
            keys=self.deduper.key_count(),
            coins=len(self.deduper.newest_by_coin()),
        )


def run_ingest(
    settings: Settings, stop: StopFlag, log: EventLog, context: zmq.Context[Any]
) -> None:
    """Run ingest until `stop` is set."""
    Ingest(settings, stop, log, context).run()
