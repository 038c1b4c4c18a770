"""FakeExchange: a local Hyperliquid look-alike speaking the real wire protocol on 127.0.0.1.

A websocket server (`websockets.sync`, one thread per connection plus one sender thread
each) serves `trades`, `l2Book` and `bbo` subscriptions with the venue's quirks: every
subscribe is acked and followed by an unflagged replay of up to 30 recent trades, an
unknown or delisted coin closes the socket without any frame, idle connections are closed
after `idle_close_s`. A `ThreadingHTTPServer` answers POST /info (`meta`, `spotMeta`,
`candleSnapshot`, `recentTrades`). A generator thread produces live trades at wall-clock
time. Thread-safe controls let tests inject faults (zombie feed, dropped connections,
garbage frames, REST errors and slow REST answers, delisting, quiet coins) and script the
trade log behind the REST answers (`add_trades`, `drop_trades`).
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from hlstream.common.timebucket import REST_INTERVALS, parse_interval
from hlstream.sim import market

DEFAULT_COINS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "LINK", "HYPE")
DEFAULT_SPOT = ("PURR/USDC", "@107")
REPLAY_TRADES = 30
RECENT_TRADES = 10
TICK_S = 0.05
BOOK_EVERY_S = 0.5
_SPOT_TOKENS = {"PURR/USDC": (1, "PURR", 0), "@107": (150, "HYPE", 2)}
_CLOSE = object()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _sub_key(subscription: dict[str, Any]) -> str:
    return json.dumps(subscription, sort_keys=True, separators=(",", ":"))


@dataclass(eq=False)
class _Client:
    """One websocket connection: its subscriptions and its outbound queue."""

    conn: ServerConnection
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: queue.SimpleQueue[object] = field(default_factory=queue.SimpleQueue)
    dead: bool = False

    def coins(self, kind: str | None = None) -> set[str]:
        return {
            str(sub["coin"]) for sub in self.subs.values() if kind is None or sub["type"] == kind
        }


def _parse_request(text: str) -> tuple[str, dict[str, Any] | None] | None:
    """(method, subscription) of a client message, or None when it is not a valid request."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    method = body.get("method")
    if method == "ping":
        return "ping", None
    if method not in ("subscribe", "unsubscribe"):
        return None
    sub = body.get("subscription")
    if not isinstance(sub, dict) or sub.get("type") not in ("trades", "l2Book", "bbo"):
        return None
    if not isinstance(sub.get("coin"), str):
        return None
    return str(method), sub


class FakeExchange:
    """A fake Hyperliquid exchange (websocket + POST /info) running in background threads."""

    def __init__(
        self,
        *,
        coins: list[str] | tuple[str, ...] = DEFAULT_COINS,
        spot: list[str] | tuple[str, ...] = DEFAULT_SPOT,
        rate_per_coin: float = 4.0,
        seed: int | None = None,
        history_hours: float = 1.0,
        history_gap_s: float = 90.0,
        history_every_s: float = 20.0,
        batch_max: int = 5,
        idle_close_s: float = 60.0,
        ws_port: int = 0,
        http_port: int = 0,
        tick_s: float = TICK_S,
    ) -> None:
        self._perps = list(coins)
        self._spot = list(spot)
        self._delisted: set[str] = set()
        self._rate = rate_per_coin
        self._coin_rates: dict[str, float] = {}  # per-coin overrides of the rate
        self._rng = random.Random(seed)
        self._book_rng = random.Random(None if seed is None else seed + 1)
        self._batch_max = max(1, batch_max)
        self._idle_close_s = idle_close_s
        self._ports = (ws_port, http_port)
        self._tick_s = tick_s  # trades are generated and sent in bursts this far apart
        self._lock = threading.RLock()
        self._states = {coin: market.new_state(coin) for coin in self._perps + self._spot}
        self._logs: dict[str, list[market.VenueTrade]] = {coin: [] for coin in self._states}
        self._quiet: set[str] = set()
        self._blocks: set[str] = set()  # coins whose live trades come in one-time blocks
        self._shuffled_replay: set[str] = set()  # coins whose subscribe replay is shuffled
        self._blackhole: set[str | None] = set()
        self._paused = False
        self._zombie = False
        self._clients: set[_Client] = set()
        self._drop_epoch = 0
        self._conn_epochs: dict[int, int] = {}
        self._subscribes = 0
        self._rest_log: list[Any] = []
        self._rest_fail: tuple[int, int, float | None] = (0, 0, None)
        # Scripted REST faults, used after `_rest_fail` is spent: [status, count, retry_after,
        # delay_s]; status 0 answers normally (after delay_s).
        self._rest_script: deque[list[Any]] = deque()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ws_server: Server | None = None
        self._http_server: ThreadingHTTPServer | None = None
        end_ms = int(time.time() * 1000) - int(history_gap_s * 1000)
        self._make_history(end_ms - int(history_hours * 3_600_000), end_ms, history_every_s)

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Bind both servers on 127.0.0.1 and start the server and generator threads."""
        ws_port, http_port = self._ports
        self._ws_server = serve(
            self._handle_ws,
            "127.0.0.1",
            ws_port,
            process_request=self._stamp_epoch,
            ping_interval=None,
            close_timeout=0.5,
            compression=None,
        )
        self._http_server = ThreadingHTTPServer(("127.0.0.1", http_port), _make_handler(self))
        self._http_server.daemon_threads = True
        http_server = self._http_server
        self._spawn(self._ws_server.serve_forever, "sim-ws")
        self._spawn(lambda: http_server.serve_forever(poll_interval=0.05), "sim-http")
        self._spawn(self._generate_forever, "sim-gen")

    def stop(self) -> None:
        """Close every connection and server, and join the threads."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.drop_connections()
        if self._ws_server is not None:
            self._ws_server.shutdown()
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
        for thread in self._threads:
            thread.join(timeout=2.0)

    def __enter__(self) -> FakeExchange:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def ws_url(self) -> str:
        assert self._ws_server is not None, "start() first"
        return f"ws://127.0.0.1:{self._ws_server.socket.getsockname()[1]}/ws"

    @property
    def info_url(self) -> str:
        assert self._http_server is not None, "start() first"
        return f"http://127.0.0.1:{self._http_server.server_address[1]}/info"

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # ----- controls --------------------------------------------------------------------

    def set_quiet(self, coin: str, quiet: bool) -> None:
        """Stop (or resume) live trades for one coin."""
        with self._lock:
            (self._quiet.add if quiet else self._quiet.discard)(coin)

    def set_blocks(self, coin: str, on: bool) -> None:
        """While on, the live trades of `coin` generated in one tick share one time, as the
        venue stamps every trade of a block with the block's time."""
        with self._lock:
            (self._blocks.add if on else self._blocks.discard)(coin)

    def set_shuffled_replay(self, coin: str, on: bool) -> None:
        """While on, the subscribe replay of `coin` comes in a random order, not time order."""
        with self._lock:
            (self._shuffled_replay.add if on else self._shuffled_replay.discard)(coin)

    def delist(self, coin: str) -> None:
        """Remove `coin` from meta; close every connection subscribed to it, without a frame."""
        with self._lock:
            self._delisted.add(coin)
            victims = [client for client in self._clients if coin in client.coins()]
        for client in victims:
            self._kill(client)

    def drop_connections(self) -> None:
        """Close every websocket connection abruptly (no close frame).

        Also catches connections whose handshake finished but whose handler has not
        registered yet: their epoch is stamped before the 101 response goes out.
        """
        with self._lock:
            self._drop_epoch += 1
            victims = list(self._clients)
        for client in victims:
            self._kill(client)

    def set_zombie(self, on: bool) -> None:
        """While on, connections stay open but the server sends nothing and ignores input."""
        with self._lock:
            self._zombie = on

    def inject_raw(self, text: str) -> None:
        """Send a raw text frame (e.g. garbage) to every connection."""
        with self._lock:
            for client in self._clients:
                client.outbox.put(text)

    def fail_rest(self, status: int, count: int, retry_after: float | None = None) -> None:
        """Answer the next `count` /info requests with HTTP `status` (and Retry-After)."""
        with self._lock:
            self._rest_fail = (status, count, retry_after)

    def queue_rest_fault(self, status: int, count: int, retry_after: float | None = None) -> None:
        """After the faults already queued, answer `count` /info requests with HTTP `status`."""
        with self._lock:
            self._rest_script.append([status, count, retry_after, 0.0])

    def delay_rest(self, seconds: float, count: int) -> None:
        """After the faults already queued, answer `count` /info requests `seconds` late (a
        client with a shorter timeout sees a timeout; the late answer is then discarded)."""
        with self._lock:
            self._rest_script.append([0, count, None, seconds])

    def rest_faults_pending(self) -> int:
        """Requests still to be failed or delayed by fail_rest/queue_rest_fault/delay_rest."""
        with self._lock:
            return int(self._rest_fail[1]) + sum(int(step[1]) for step in self._rest_script)

    def set_rate(self, rate_per_coin: float, coin: str | None = None) -> None:
        """Change the live trade rate (trades per second per coin), of one coin or of all."""
        with self._lock:
            if coin is None:
                self._rate = rate_per_coin
                self._coin_rates.clear()
            else:
                self._coin_rates[coin] = rate_per_coin

    def set_blackhole(self, coin: str | None, on: bool) -> None:
        """While on, live trades of `coin` (None: every coin) are generated and logged (so
        REST candles and subscribe replays have them) but never sent on open connections."""
        with self._lock:
            (self._blackhole.add if on else self._blackhole.discard)(coin)

    def pause_trades(self, paused: bool) -> None:
        """Stop (or resume) live trades for every coin."""
        with self._lock:
            self._paused = paused

    def add_trades(self, coin: str, trades: Iterable[tuple[int, str, str]]) -> None:
        """Log scripted trades of `coin`, each `(time_ms, px, sz)`, as if they had happened.

        candleSnapshot, recentTrades and later subscribe replays include them (at any time,
        past or future); open connections are not sent them. Side, hash, tid and users are
        drawn like a generated trade's. The log stays in time order. `coin` must be one the
        exchange was created with (KeyError otherwise).
        """
        with self._lock:
            log = self._logs[coin]
            log.extend(
                market.venue_trade(coin, ts_ms, px, sz, self._rng) for ts_ms, px, sz in trades
            )
            log.sort(key=lambda trade: int(trade["time"]))  # stable: equal times keep order

    def drop_trades(self, coin: str, from_ms: int, to_ms: int) -> int:
        """Forget every logged trade of `coin` with `from_ms <= time < to_ms`; return how many.

        The exchange then answers as if nobody traded then: candleSnapshot omits the windows
        left empty, and recentTrades and subscribe replays lack those trades.
        """
        with self._lock:
            log = self._logs.get(coin, [])
            keep = [trade for trade in log if not from_ms <= int(trade["time"]) < to_ms]
            dropped = len(log) - len(keep)
            log[:] = keep
            return dropped

    # ----- accessors -------------------------------------------------------------------

    def trades(self, coin: str) -> list[market.VenueTrade]:
        """A copy of every trade of `coin` (history and live), in generation order."""
        with self._lock:
            return [trade.copy() for trade in self._logs.get(coin, [])]

    def trim_log(self, before_ms: int) -> dict[str, list[market.VenueTrade]]:
        """Remove and return every logged trade older than `before_ms`, per coin.

        For long runs (bench/soak.py) that fold old trades into reference bars: afterwards
        `trades()`, candleSnapshot and replays know only the newer trades.
        """
        with self._lock:
            out = {}
            for coin, log in self._logs.items():
                keep = next((i for i, t in enumerate(log) if int(t["time"]) >= before_ms), len(log))
                out[coin], self._logs[coin] = log[:keep], log[keep:]
            return out

    def connection_count(self) -> int:
        """Open websocket connections."""
        with self._lock:
            return len(self._clients)

    def subscribe_count(self) -> int:
        """Subscribe messages received so far (all connections, all outcomes)."""
        with self._lock:
            return self._subscribes

    def rest_requests(self) -> list[Any]:
        """Bodies of /info requests received (decoded JSON, or the raw text if not JSON)."""
        with self._lock:
            return list(self._rest_log)

    def listed(self) -> list[str]:
        """Coins currently subscribable (perps then spot), delisted ones excluded."""
        with self._lock:
            return [c for c in self._perps + self._spot if c not in self._delisted]

    # ----- trades ----------------------------------------------------------------------

    def _make_history(self, from_ms: int, to_ms: int, every_s: float) -> None:
        for coin, state in self._states.items():
            ts_ms = from_ms
            while True:
                ts_ms += max(1, int(self._rng.expovariate(1.0 / every_s) * 1000))
                if ts_ms >= to_ms:
                    break
                self._logs[coin].append(market.make_trade(coin, ts_ms, self._rng, state))

    def _generate_forever(self) -> None:
        last_ms = int(time.time() * 1000)
        last_book = 0.0
        while not self._stopping.wait(self._tick_s):
            now_ms = int(time.time() * 1000)
            self._tick(last_ms, now_ms)
            last_ms = max(last_ms, now_ms)
            if time.monotonic() - last_book >= BOOK_EVERY_S:
                last_book = time.monotonic()
                self._send_books(now_ms)

    def _tick(self, last_ms: int, now_ms: int) -> None:
        """Generate the trades of (last_ms, now_ms], log them, then queue them for sending."""
        with self._lock:
            if self._paused:
                return
            elapsed_s = max(0, now_ms - last_ms) / 1000
            for coin in self.listed():
                if coin in self._quiet:
                    continue
                count = market.poisson(
                    self._rng, self._coin_rates.get(coin, self._rate) * elapsed_s
                )
                low = min(last_ms + 1, now_ms)
                if coin in self._blocks:
                    times = [now_ms] * count
                else:
                    times = sorted(self._rng.randint(low, now_ms) for _ in range(count))
                batch = [market.make_trade(coin, ts, self._rng, self._states[coin]) for ts in times]
                self._logs[coin].extend(batch)
                if coin in self._blackhole or None in self._blackhole:
                    continue
                for client in self._clients:
                    if coin in client.coins("trades"):
                        self._queue_trades(client, batch)

    def _queue_trades(self, client: _Client, batch: list[market.VenueTrade]) -> None:
        for i in range(0, len(batch), self._batch_max):
            frame = batch[i : i + self._batch_max]
            distinct = len({trade["time"] for trade in frame}) == len(frame)
            if distinct and self._rng.random() < 0.3:
                frame = frame[::-1]
            client.outbox.put(_dumps({"channel": "trades", "data": frame}))

    def _send_books(self, now_ms: int) -> None:
        with self._lock:
            for client in self._clients:
                for coin in client.coins("l2Book") | client.coins("bbo"):
                    self._queue_book(client, coin, now_ms)

    def _queue_book(self, client: _Client, coin: str, now_ms: int, only: str = "") -> None:
        book = market.make_book(coin, now_ms, self._book_rng, self._states[coin])
        if only in ("", "l2Book") and coin in client.coins("l2Book"):
            client.outbox.put(_dumps({"channel": "l2Book", "data": book}))
        if only in ("", "bbo") and coin in client.coins("bbo"):
            client.outbox.put(_dumps({"channel": "bbo", "data": market.book_to_bbo(book)}))

    # ----- websocket -------------------------------------------------------------------

    def _kill(self, client: _Client) -> None:
        """Close a connection's socket without a close frame."""
        client.dead = True
        client.outbox.put(_CLOSE)
        with contextlib.suppress(OSError):
            client.conn.socket.shutdown(socket.SHUT_RDWR)
        client.conn.close_socket()

    def _stamp_epoch(self, conn: ServerConnection, request: Request) -> Response | None:
        """Before the handshake answer: remember which drop epoch the connection belongs to."""
        with self._lock:
            self._conn_epochs[id(conn)] = self._drop_epoch
        return None

    def _handle_ws(self, conn: ServerConnection) -> None:
        client = _Client(conn)
        with self._lock:
            epoch = self._conn_epochs.pop(id(conn), self._drop_epoch)
            if self._stopping.is_set() or epoch != self._drop_epoch:
                self._kill(client)
                return
            self._clients.add(client)
        sender = threading.Thread(target=self._send_forever, args=(client,), daemon=True)
        sender.start()
        try:
            self._serve_client(client)
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self._lock:
                self._clients.discard(client)
            client.outbox.put(_CLOSE)
            sender.join(timeout=1.0)

    def _serve_client(self, client: _Client) -> None:
        last_msg = time.monotonic()
        while not client.dead:
            wait_s = self._idle_close_s - (time.monotonic() - last_msg)
            try:
                text = client.conn.recv(timeout=max(0.01, min(wait_s, 0.5)))
            except TimeoutError:
                if self._zombie:
                    last_msg = time.monotonic()
                elif time.monotonic() - last_msg >= self._idle_close_s:
                    client.conn.close()
                    return
                continue
            last_msg = time.monotonic()
            if self._zombie:
                continue
            if not isinstance(text, str):
                text = text.decode("utf-8", "replace")
            self._on_message(client, text)

    def _on_message(self, client: _Client, text: str) -> None:
        request = _parse_request(text)
        if request is None:
            error = f"Error parsing JSON into valid websocket request: {text}"
            client.outbox.put(_dumps({"channel": "error", "data": error}))
            return
        method, sub = request
        if sub is None:
            client.outbox.put(_dumps({"channel": "pong"}))
            return
        with self._lock:
            if method == "subscribe":
                self._subscribes += 1
            if sub["coin"] not in self.listed():
                kill = True
            else:
                kill = False
                self._apply_subscription(client, method, sub)
        if kill:
            self._kill(client)

    def _apply_subscription(self, client: _Client, method: str, sub: dict[str, Any]) -> None:
        """Ack, error or replay for one (un)subscribe; call with the lock held."""
        key = _sub_key(sub)
        if method == "subscribe" and key in client.subs:
            client.outbox.put(_dumps({"channel": "error", "data": f"Already subscribed: {key}"}))
            return
        if method == "unsubscribe" and key not in client.subs:
            error = f"Already unsubscribed: {key}"
            client.outbox.put(_dumps({"channel": "error", "data": error}))
            return
        ack = {"method": method, "subscription": sub}
        client.outbox.put(_dumps({"channel": "subscriptionResponse", "data": ack}))
        if method == "unsubscribe":
            del client.subs[key]
            return
        client.subs[key] = sub
        coin = str(sub["coin"])
        if sub["type"] == "trades":
            replay = self._logs[coin][-REPLAY_TRADES:]
            if coin in self._shuffled_replay:
                self._rng.shuffle(replay)
            client.outbox.put(_dumps({"channel": "trades", "data": replay}))
        else:
            self._queue_book(client, coin, int(time.time() * 1000), only=str(sub["type"]))

    def _send_forever(self, client: _Client) -> None:
        while True:
            item = client.outbox.get()
            if item is _CLOSE or client.dead:
                return
            if self._zombie:
                continue
            try:
                client.conn.send(str(item))
            except (ConnectionClosed, OSError, RuntimeError):
                return

    # ----- REST ------------------------------------------------------------------------

    def handle_info(self, raw: bytes) -> tuple[int, dict[str, str], str]:
        """Answer one POST /info body: (status, extra headers, body text)."""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._rest_log.append(body if body is not None else raw.decode("utf-8", "replace"))
            status, count, retry_after = self._rest_fail
            delay_s = 0.0
            if count > 0:
                self._rest_fail = (status, count - 1, retry_after)
            elif self._rest_script:
                step = self._rest_script[0]
                status, retry_after, delay_s = step[0], step[2], step[3]
                step[1] -= 1
                if step[1] <= 0:
                    self._rest_script.popleft()
            else:
                status = 0
            if status:
                headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
                return status, headers, f"simulated HTTP {status}"
        if delay_s > 0:
            self._stopping.wait(delay_s)  # outside the lock: other requests go on meanwhile
        with self._lock:
            if not isinstance(body, dict):
                return 422, {}, "Failed to deserialize the JSON body into the target type"
            return self._answer(body)

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
        kind = body.get("type")
        if kind == "meta":
            return 200, {}, _dumps(self._meta())
        if kind == "spotMeta":
            return 200, {}, _dumps(self._spot_meta())
        if kind == "recentTrades":
            recent = self._logs.get(str(body.get("coin")), [])[-RECENT_TRADES:]
            return 200, {}, _dumps(recent[::-1])
        if kind == "candleSnapshot":
            return self._candle_snapshot(body.get("req"))
        return 422, {}, f"Failed to deserialize the JSON body into the target type: type {kind!r}"

    def _candle_snapshot(self, req: Any) -> tuple[int, dict[str, str], str]:
        bad = "Failed to deserialize the JSON body into the target type: req"
        if not isinstance(req, dict) or not isinstance(req.get("coin"), str):
            return 422, {}, f"{bad}: missing field `coin`"
        interval = req.get("interval")
        if interval not in REST_INTERVALS:
            expected = ", ".join(f"`{i}`" for i in sorted(REST_INTERVALS))
            message = f"{bad}.interval: unknown variant `{interval}`, expected one of {expected}"
            return 422, {}, message
        start_ms = req.get("startTime")
        end_ms = req.get("endTime", int(time.time() * 1000))
        if not isinstance(start_ms, int) or not isinstance(end_ms, int):
            return 422, {}, f"{bad}.startTime: invalid type, expected u64"
        log = self._logs.get(req["coin"], [])
        rows = market.candles(
            log, req["coin"], str(interval), parse_interval(str(interval)), start_ms, end_ms
        )
        return 200, {}, _dumps(rows)

    def _meta(self) -> dict[str, Any]:
        universe = []
        for coin in self._perps:
            if coin in self._delisted:
                continue
            spec = market.coin_spec(coin)
            universe.append(
                {"name": coin, "szDecimals": spec.sz_decimals, "maxLeverage": spec.max_leverage}
            )
        return {"universe": universe}

    def _spot_meta(self) -> dict[str, Any]:
        tokens = [_token("USDC", 0, 8)]
        universe = []
        for position, name in enumerate(self._spot):
            if name in self._delisted:
                continue
            default_index = int(name[1:]) if name[1:].isdigit() else position
            token_index, token_name, sz_dec = _SPOT_TOKENS.get(
                name, (1000 + position, name.split("/")[0].lstrip("@"), 2)
            )
            tokens.append(_token(token_name, token_index, sz_dec))
            universe.append(
                {
                    "name": name,
                    "tokens": [token_index, 0],
                    "index": default_index,
                    "isCanonical": not name.startswith("@"),
                }
            )
        return {"universe": universe, "tokens": tokens}


def _token(name: str, index: int, sz_decimals: int) -> dict[str, Any]:
    return {
        "name": name,
        "szDecimals": sz_decimals,
        "weiDecimals": 8,
        "index": index,
        "tokenId": f"0x{index:032x}",
        "isCanonical": index < 1000,
    }


def _make_handler(exchange: FakeExchange) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `exchange`."""

    class InfoHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?")[0] != "/info":
                self._reply(404, {}, "Not Found")
                return
            self._reply(*exchange.handle_info(raw))

        def do_GET(self) -> None:  # noqa: N802
            self._reply(405, {}, "Method Not Allowed")

        def _reply(self, status: int, headers: dict[str, str], text: str) -> None:
            data = text.encode()
            self.send_response(status)
            is_json = status == 200
            self.send_header("Content-Type", "application/json" if is_json else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            for key, value in headers.items():
                self.send_header(key, value)
            # A client that timed out on a delayed answer has gone away: not our problem.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return InfoHandler
