"""FakeExchange: a local Hyperliquid look-alike speaking the real wire protocol on 127.0.0.1.
It owns the state (listing, trade logs, price walks, fault switches) under one lock and makes
live trades at wall-clock time; `ws.py` serves the feed, `rest.py` POST /info."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from http.server import ThreadingHTTPServer
from typing import TypeVar

from hlstream.common import clock
from hlstream.common.config import DEFAULT_COINS
from hlstream.common.timebucket import parse_interval
from hlstream.sim import market, rest
from hlstream.sim.faults import CandleFault, Faults, RestFault
from hlstream.sim.market import Listing, VenueTrade, dumps
from hlstream.sim.ws import WsServer, trade_frames

DEFAULT_SPOT = ("PURR/USDC", "@107")
REPLAY_TRADES = 30  # a trades subscribe is answered with this many of the newest trades
TICK_S = 0.05  # live trades are made and sent in bursts this far apart
BOOK_EVERY_S = 0.5
HTTP_POLL_S = 0.05  # how soon the /info server sees a shutdown
JOIN_TIMEOUT_S = 2.0
HOUR_MS = 3_600_000
T = TypeVar("T")


class FakeExchange:
    """A fake Hyperliquid exchange (websocket + POST /info) running in background threads.

    History: trades every ~`history_every_s` over `history_hours`, ending `history_gap_s`
    ago. Live: `rate_per_coin` trades per second per listed coin, sent in frames of at most
    `batch_max` trades. `seed` makes the trades reproducible.
    """

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
        self._listing = Listing(list(coins), list(spot), set())
        self._rate = rate_per_coin
        self._coin_rates: dict[str, float] = {}
        self._rng = random.Random(seed)
        self._book_rng = random.Random(None if seed is None else seed + 1)
        self._batch_max = max(1, batch_max)
        self._ports = (ws_port, http_port)
        self._tick_s = tick_s
        self._lock = threading.RLock()
        self._faults = Faults()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._states = {coin: market.new_state(coin) for coin in [*coins, *spot]}
        self._logs: dict[str, list[VenueTrade]] = {coin: [] for coin in self._states}
        self._rest_log: list[object] = []
        self._ws = WsServer(
            self._lock, self._faults, idle_close_s, self._is_listed, self._answer_sub
        )
        self._http: ThreadingHTTPServer | None = None
        end_ms = clock.now_ms() - int(history_gap_s * 1000)
        self._make_history(end_ms - int(history_hours * HOUR_MS), end_ms, history_every_s)

    def start(self) -> None:
        """Bind both servers on 127.0.0.1 and start the server and generator threads."""
        ws_port, http_port = self._ports
        self._spawn(self._ws.listen(ws_port).serve_forever, "sim-ws")
        http = self._http = rest.listen(http_port, self._on_info)
        self._spawn(lambda: http.serve_forever(poll_interval=HTTP_POLL_S), "sim-http")
        self._spawn(self._generate_forever, "sim-gen")

    def stop(self) -> None:
        """Close every connection and server, and join the threads."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._ws.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=JOIN_TIMEOUT_S)

    def __enter__(self) -> FakeExchange:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def ws_url(self) -> str:
        return self._ws.url

    @property
    def info_url(self) -> str:
        assert self._http is not None, "start() first"
        return f"http://127.0.0.1:{self._http.server_address[1]}/info"

    def _spawn(self, target: Callable[[], object], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def pause_trades(self, paused: bool) -> None:
        """Stop (or resume) live trades for every coin."""
        with self._lock:
            self._faults.paused = paused

    # The per-coin switches; Faults says what each does.
    def set_quiet(self, coin: str, quiet: bool) -> None:
        self._switch(self._faults.quiet, coin, quiet)

    def set_blocks(self, coin: str, on: bool) -> None:
        self._switch(self._faults.blocks, coin, on)

    def set_shuffled_replay(self, coin: str, on: bool) -> None:
        self._switch(self._faults.shuffled_replay, coin, on)

    def set_blackhole(self, coin: str | None, on: bool) -> None:
        self._switch(self._faults.blackhole, coin, on)

    def _switch(self, members: set[T], member: T, on: bool) -> None:
        with self._lock:
            (members.add if on else members.discard)(member)

    def set_rate(self, rate_per_coin: float, coin: str | None = None) -> None:
        """Change the live trade rate (trades per second), of one coin or of all."""
        with self._lock:
            if coin is None:
                self._rate = rate_per_coin
                self._coin_rates.clear()
            else:
                self._coin_rates[coin] = rate_per_coin

    def delist(self, coin: str) -> None:
        """Remove `coin` from meta; close every connection subscribed to it, without a frame."""
        with self._lock:
            self._listing.delisted.add(coin)
        self._ws.drop(coin)

    def drop_connections(self) -> None:
        """Close every websocket connection abruptly (no close frame)."""
        self._ws.drop()

    def set_candle_edit(self, coin: str, fields: dict[str, object] | None) -> None:
        """Serve `coin`'s candles with `fields` replaced (None: as they are)."""
        with self._lock:
            self._faults.candle_edits[coin] = dict(fields or {})

    def set_candle_fault(
        self,
        coin: str,
        start_ms: int,
        *,
        interval: str = "1m",
        edit: dict[str, object] | None = None,
        late_s: float | None = None,
        missing: bool = False,
    ) -> None:
        """Serve `coin`'s one candle at `start_ms` with `edit`'s fields replaced (e.g. `{"v":
        "1.5", "n": 3}`), or only from `late_s` seconds after its window ended, or never
        (`missing`); with none of them, as it is."""
        fault = CandleFault(
            dict(edit or {}),
            0 if late_s is None else start_ms + parse_interval(interval) + int(late_s * 1000),
            missing,
        )
        with self._lock:
            self._faults.candle_faults[(coin, interval, start_ms)] = fault

    def set_zombie(self, on: bool) -> None:
        """While on, connections stay open but the server sends nothing and ignores input."""
        with self._lock:
            self._faults.zombie = on

    def inject_raw(self, text: str) -> None:
        """Send a raw text frame (e.g. garbage) to every connection."""
        with self._lock:
            self._ws.send([text])

    def fail_rest(self, status: int, count: int, retry_after: float | None = None) -> None:
        """Answer the next `count` /info requests with HTTP `status` (and Retry-After),
        instead of the REST faults still pending."""
        with self._lock:
            self._faults.rest_queue.clear()
            self.queue_rest_fault(status, count, retry_after)

    def queue_rest_fault(self, status: int, count: int, retry_after: float | None = None) -> None:
        """After the faults already queued, answer `count` /info requests with HTTP `status`."""
        with self._lock:
            self._faults.rest_queue.append(RestFault(status, count, retry_after))

    def delay_rest(self, seconds: float, count: int) -> None:
        """After the faults already queued, answer `count` /info requests `seconds` late."""
        with self._lock:
            self._faults.rest_queue.append(RestFault(0, count, delay_s=seconds))

    def rest_faults_pending(self) -> int:
        """Requests still to be failed or delayed."""
        with self._lock:
            return self._faults.rest_pending()

    def add_trades(self, coin: str, trades: Iterable[tuple[int, str, str]]) -> None:
        """Log trades of `coin` (one the exchange was created with), each `(time_ms, px, sz)`,
        at any time, past or future: /info and later replays have them, open connections not."""
        with self._lock:
            log = self._logs[coin]
            log.extend(
                market.venue_trade(coin, ts_ms, px, sz, self._rng) for ts_ms, px, sz in trades
            )
            log.sort(key=lambda trade: trade["time"])  # stable: equal times keep their order

    def drop_trades(self, coin: str, from_ms: int, to_ms: int) -> int:
        """Forget the logged trades of `coin` with `from_ms <= time < to_ms`; return how many.
        The exchange then answers as if nobody traded then."""
        with self._lock:
            log = self._logs.get(coin, [])
            keep = [trade for trade in log if not from_ms <= trade["time"] < to_ms]
            dropped, log[:] = len(log) - len(keep), keep
            return dropped

    def trim_log(self, before_ms: int) -> dict[str, list[VenueTrade]]:
        """Remove and return every logged trade older than `before_ms`, per coin."""
        with self._lock:
            out = {}
            for coin, log in self._logs.items():
                keep = next((i for i, t in enumerate(log) if t["time"] >= before_ms), len(log))
                out[coin], self._logs[coin] = log[:keep], log[keep:]
            return out

    def trades(self, coin: str) -> list[VenueTrade]:
        """A copy of every trade of `coin` (history and live), in generation order."""
        with self._lock:
            return [trade.copy() for trade in self._logs.get(coin, [])]

    def connection_count(self) -> int:
        with self._lock:
            return len(self._ws.clients)

    def subscribe_count(self) -> int:
        """Subscribe messages received so far (all connections, all outcomes)."""
        with self._lock:
            return self._ws.subscribes

    def rest_requests(self) -> list[object]:
        """Bodies of /info requests received (decoded JSON, or the raw text if not JSON)."""
        with self._lock:
            return list(self._rest_log)

    def _is_listed(self, coin: str) -> bool:
        return coin in self._listing.coins()

    def _make_history(self, from_ms: int, to_ms: int, every_s: float) -> None:
        for coin, state in self._states.items():
            ts_ms = from_ms
            while True:
                ts_ms += max(1, int(self._rng.expovariate(1 / every_s) * 1000))
                if ts_ms >= to_ms:
                    break
                self._logs[coin].append(market.make_trade(coin, ts_ms, self._rng, state))

    def _generate_forever(self) -> None:
        last_ms, last_book = clock.now_ms(), 0.0
        while not self._stopping.wait(self._tick_s):
            now_ms = clock.now_ms()
            self._tick(last_ms, now_ms)
            last_ms = max(last_ms, now_ms)
            if time.monotonic() - last_book >= BOOK_EVERY_S:
                last_book = time.monotonic()
                self._send_books(now_ms)

    def _tick(self, last_ms: int, now_ms: int) -> None:
        """Make and log the trades of (last_ms, now_ms], then queue them for sending."""
        with self._lock:
            if self._faults.paused:
                return
            elapsed_s = max(0, now_ms - last_ms) / 1000
            watched = self._ws.watched("trades")
            for coin in self._listing.coins():
                if coin in self._faults.quiet:
                    continue
                rate = self._coin_rates.get(coin, self._rate)
                count = market.poisson(self._rng, rate * elapsed_s)
                if coin in self._faults.blocks:
                    times = [now_ms] * count
                else:
                    low = min(last_ms + 1, now_ms)
                    times = sorted(self._rng.randint(low, now_ms) for _ in range(count))
                batch = [market.make_trade(coin, ts, self._rng, self._states[coin]) for ts in times]
                self._logs[coin].extend(batch)
                if batch and coin in watched and self._faults.is_sent(coin):
                    frames = trade_frames(batch, self._batch_max, self._rng)
                    self._ws.send(frames, "trades", coin)

    def _send_books(self, now_ms: int) -> None:
        with self._lock:
            for kind in ("l2Book", "bbo"):
                for coin in self._ws.watched(kind):
                    self._ws.send(self._book_frames(kind, coin, now_ms), kind, coin)

    def _book_frames(self, kind: str, coin: str, now_ms: int) -> list[str]:
        book = market.make_book(coin, now_ms, self._book_rng, self._states[coin])
        data = book if kind == "l2Book" else market.book_to_bbo(book)
        return [dumps({"channel": kind, "data": data})]

    def _answer_sub(self, kind: str, coin: str) -> list[str]:
        """The frames after a subscribe's ack: the newest trades, or a book."""
        if kind != "trades":
            return self._book_frames(kind, coin, clock.now_ms())
        replay = self._logs[coin][-REPLAY_TRADES:]
        if coin in self._faults.shuffled_replay:
            self._rng.shuffle(replay)
        return [dumps({"channel": "trades", "data": replay})]

    def _on_info(self, raw: bytes) -> rest.Reply:
        """Log one /info body, meet the next REST fault, then answer."""
        try:
            body: object = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._rest_log.append(body if body is not None else raw.decode("utf-8", "replace"))
            fault = self._faults.take_rest_fault()
        if fault is not None and fault.status:
            return rest.Reply(fault.status, f"simulated HTTP {fault.status}", fault.retry_after_s)
        if fault is not None:
            self._stopping.wait(fault.delay_s)  # outside the lock: other requests go on
        with self._lock:
            return rest.answer(body, self._listing, self._logs, clock.now_ms(), self._faults)
