"""The fake exchange's websocket server, with the venue's quirks: every subscribe is acked, then
answered (a trade replay or a book); a coin that is not listed closes the socket without a
frame; an idle connection is closed after `idle_close_s`. Each connection has a sender thread,
so a slow client never holds the exchange's lock."""

from __future__ import annotations

import contextlib
import json
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from hlstream.sim.faults import Faults
from hlstream.sim.market import VenueTrade, dumps

KINDS = ("trades", "l2Book", "bbo")
CLOSE_TIMEOUT_S = 0.5  # wait for the client's close frame before dropping the socket
RECV_POLL_S = 0.5  # longest recv wait, so kills and idleness are seen this soon
RECV_MIN_S = 0.01
SENDER_JOIN_S = 1.0
REVERSED_FRAME_SHARE = 0.3  # of trade frames the venue sends newest first


def trade_frames(batch: list[VenueTrade], batch_max: int, rng: random.Random) -> list[str]:
    """`trades` frames of at most `batch_max` trades. Trades of one time are in execution
    order, so only a frame of distinct times may come newest first."""
    frames = []
    for i in range(0, len(batch), batch_max):
        frame = batch[i : i + batch_max]
        if len({t["time"] for t in frame}) == len(frame) and rng.random() < REVERSED_FRAME_SHARE:
            frame = frame[::-1]
        frames.append(dumps({"channel": "trades", "data": frame}))
    return frames


class Sub(NamedTuple):
    """A subscription; `echo` is the client's JSON object, sent back in acks."""

    kind: str
    coin: str
    key: str
    echo: dict[str, object]


def parse_request(text: str) -> tuple[str, Sub | None] | None:
    """(method, subscription) of a client message, ("ping", None), or None if invalid."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    method = body.get("method") if isinstance(body, dict) else None
    if method == "ping":
        return "ping", None
    sub = body.get("subscription") if method in ("subscribe", "unsubscribe") else None
    if isinstance(sub, dict) and sub.get("type") in KINDS and isinstance(sub.get("coin"), str):
        key = json.dumps(sub, sort_keys=True, separators=(",", ":"))
        return str(method), Sub(sub["type"], sub["coin"], key, sub)
    return None


@dataclass(eq=False)
class _Client:
    """One connection: its subscriptions by key and its outbound queue (None: close)."""

    conn: ServerConnection
    subs: dict[str, Sub] = field(default_factory=dict)
    outbox: queue.SimpleQueue[str | None] = field(default_factory=queue.SimpleQueue)
    dead: bool = False

    def coins(self, kind: str | None = None) -> set[str]:
        return {sub.coin for sub in self.subs.values() if kind in (None, sub.kind)}

    def kill(self) -> None:
        """Close the socket without a close frame."""
        self.dead = True
        self.outbox.put(None)
        with contextlib.suppress(OSError):
            self.conn.socket.shutdown(socket.SHUT_RDWR)
        self.conn.close_socket()


class WsServer:
    """The websocket side of one exchange, guarded by the exchange's `lock`: hold it to call
    `watched` and `send`, and to read `clients` and `subscribes`. `is_listed(coin)` and
    `answer(kind, coin)` (the frames after a subscribe's ack) are called with it held."""

    def __init__(
        self,
        lock: threading.RLock,
        faults: Faults,
        idle_close_s: float,
        is_listed: Callable[[str], bool],
        answer: Callable[[str, str], list[str]],
    ) -> None:
        self._lock, self._faults, self._idle_close_s = lock, faults, idle_close_s
        self._is_listed, self._answer = is_listed, answer
        self._closing = False
        self.clients: set[_Client] = set()
        self._drop_epoch = 0
        self._conn_epochs: dict[int, int] = {}
        self.subscribes = 0  # subscribe messages received (all connections, all outcomes)
        self.server: Server | None = None

    def listen(self, port: int) -> Server:
        """Bind on 127.0.0.1; the caller runs `serve_forever`."""
        self.server = serve(
            self._handle,
            "127.0.0.1",
            port,
            process_request=self._stamp_epoch,
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT_S,
            compression=None,
        )
        return self.server

    def close(self) -> None:
        """Drop every connection, refuse new ones, and stop serving."""
        self._closing = True
        self.drop()
        if self.server is not None:
            self.server.shutdown()

    @property
    def url(self) -> str:
        assert self.server is not None, "start() first"
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/ws"

    def watched(self, kind: str) -> set[str]:
        """Coins some connection subscribes to with `kind`."""
        return set().union(*(client.coins(kind) for client in self.clients))

    def send(self, frames: list[str], kind: str = "", coin: str = "") -> None:
        """Queue `frames` to every connection subscribed to `kind` of `coin` (no kind: all)."""
        for client in self.clients:
            if not kind or coin in client.coins(kind):
                for frame in frames:
                    client.outbox.put(frame)

    def drop(self, coin: str | None = None) -> None:
        """Close every connection subscribed to `coin` (None: every one) without a frame.
        Dropping all also catches connections whose handshake finished but whose handler has
        not registered yet: their epoch was stamped before the 101 response went out."""
        with self._lock:
            if coin is None:
                self._drop_epoch += 1
            victims = [c for c in self.clients if coin is None or coin in c.coins()]
        for client in victims:
            client.kill()

    def _stamp_epoch(self, conn: ServerConnection, request: Request) -> Response | None:
        with self._lock:
            self._conn_epochs[id(conn)] = self._drop_epoch
        return None

    def _handle(self, conn: ServerConnection) -> None:
        client = _Client(conn)
        with self._lock:
            epoch = self._conn_epochs.pop(id(conn), self._drop_epoch)
            if self._closing or epoch != self._drop_epoch:
                client.kill()
                return
            self.clients.add(client)
        sender = threading.Thread(target=self._send_forever, args=(client,), daemon=True)
        sender.start()
        try:
            with contextlib.suppress(ConnectionClosed, OSError):
                self._serve(client)
        finally:
            with self._lock:
                self.clients.discard(client)
            client.outbox.put(None)
            sender.join(timeout=SENDER_JOIN_S)

    def _serve(self, client: _Client) -> None:
        last_msg = time.monotonic()
        while not client.dead:
            wait_s = self._idle_close_s - (time.monotonic() - last_msg)
            try:
                data = client.conn.recv(timeout=max(RECV_MIN_S, min(wait_s, RECV_POLL_S)))
            except TimeoutError:
                if self._faults.zombie:
                    last_msg = time.monotonic()
                elif time.monotonic() - last_msg >= self._idle_close_s:
                    client.conn.close()
                    return
                continue
            last_msg = time.monotonic()
            if not self._faults.zombie:
                text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                self._on_message(client, text)

    def _on_message(self, client: _Client, text: str) -> None:
        request = parse_request(text)
        if request is None:
            error = f"Error parsing JSON into valid websocket request: {text}"
            client.outbox.put(dumps({"channel": "error", "data": error}))
            return
        method, sub = request
        if sub is None:
            client.outbox.put(dumps({"channel": "pong"}))
            return
        with self._lock:
            if method == "subscribe":
                self.subscribes += 1
            listed = self._is_listed(sub.coin)
            if listed:
                self._apply(client, method, sub)
        if not listed:
            client.kill()

    def _apply(self, client: _Client, method: str, sub: Sub) -> None:
        """Ack, error or answer one (un)subscribe; call with the lock held."""
        if (method == "subscribe") == (sub.key in client.subs):
            error = f"Already {method}d: {sub.key}"
            client.outbox.put(dumps({"channel": "error", "data": error}))
            return
        ack = {"method": method, "subscription": sub.echo}
        client.outbox.put(dumps({"channel": "subscriptionResponse", "data": ack}))
        if method == "unsubscribe":
            del client.subs[sub.key]
            return
        client.subs[sub.key] = sub
        for frame in self._answer(sub.kind, sub.coin):
            client.outbox.put(frame)

    def _send_forever(self, client: _Client) -> None:
        while (text := client.outbox.get()) is not None and not client.dead:
            if self._faults.zombie:
                continue
            try:
                client.conn.send(text)
            except (ConnectionClosed, OSError, RuntimeError):
                return
