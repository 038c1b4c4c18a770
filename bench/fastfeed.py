"""A fast fake Hyperliquid trade feed for throughput benchmarks, in its own process.

    python -m bench.fastfeed --port P --coins BTC,ETH --rate 100000 --per-frame 5
                             [--burst-ms 70-100] [--seed 1] [--truth FILE]

sim/exchange.py is the faithful fake (REST, faults, books); it spends ~10 µs of Python per
trade, which caps a 2-core benchmark far below what the pipeline can take. This one speaks
only what a trades benchmark needs, over a hand-rolled websocket (RFC 6455, one text frame
per message): `subscribe` (answered with `subscriptionResponse` and a replay of the coin's
last 30 trades, like the venue), `ping` -> `pong`, and `trades` frames of venue-shaped
trades (coin, side, px, sz, time, hash, tid, users). Prices and sizes are integer ticks
rendered as decimal strings, so the 5 s bars it sends are computed exactly as it goes.

Timing (`--burst-ms`): `0` spreads frames evenly (each coin gets a frame of exactly
`--per-frame` trades as soon as that many are due); `70-100` sends, at random intervals in
that range, everything the block holds: one frame per coin with all of its trades in the
block, as the venue does.

Sends start when stdin gets a line (`go`); a second line (or EOF) stops the feed, writes
the truth (5 s rows per coin, as decimal strings) and the counts as JSON to `--truth`, and
exits. Prints `ready PORT` once listening.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import select
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WINDOW_MS = 5_000
REPLAY = 30
PX_DECIMALS = {"BTC": 1, "ETH": 2, "SOL": 3, "XRP": 4, "DOGE": 5, "HYPE": 3, "LINK": 3}
SZ_DECIMALS = 5


def units_text(units: int, decimals: int) -> str:
    """`12345, 2` -> `123.45`, exchange style (no trailing zeros, at least one decimal)."""
    if decimals == 0:
        return f"{units}.0"
    text = f"{units // 10**decimals}.{units % 10**decimals:0{decimals}d}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def frame_bytes(text: str) -> bytes:
    """One unmasked server -> client text frame."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 65536:
        head = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return head + payload


class Client:
    """One websocket client: handshake, then masked client frames in, text frames out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.open = False
        self.closed = False
        self.coins: set[str] = set()
        self.lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def messages(self) -> list[str]:
        """Read what is available; return whole client messages (after the handshake)."""
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return []
        self.buffer += chunk
        if not self.open:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return []
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.send(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.open, self.buffer = True, rest
        out = []
        while len(self.buffer) >= 2:
            size, offset = self.buffer[1] & 0x7F, 2
            if size == 126:
                size, offset = int.from_bytes(self.buffer[2:4], "big"), 4
            elif size == 127:
                size, offset = int.from_bytes(self.buffer[2:10], "big"), 10
            masked = self.buffer[1] & 0x80
            end = offset + (4 if masked else 0) + size
            if len(self.buffer) < end:
                break
            mask = self.buffer[offset : offset + 4] if masked else b"\0\0\0\0"
            body = self.buffer[end - size : end]
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
            opcode = self.buffer[0] & 0x0F
            self.buffer = self.buffer[end:]
            if opcode == 0x8:
                self.closed = True
            elif opcode == 0x1:
                out.append(data.decode())
        return out


class Feed:
    """Trade generation (with exact 5 s truth) and delivery to subscribed clients."""

    def __init__(
        self, coins: list[str], rate: float, per_frame: int, seed: int, users: bool = True
    ) -> None:
        self.coins = coins
        self.with_users = users  # the venue sends them with every trade
        self.rate = rate
        self.per_frame = per_frame
        self.rng = random.Random(seed)
        self.tid = 10**12
        self.ticks = {coin: 10 ** (PX_DECIMALS.get(coin, 3) + 3) for coin in coins}
        self.recent: dict[str, deque[str]] = {coin: deque(maxlen=REPLAY) for coin in coins}
        self.hashes = [f"0x{self.rng.getrandbits(256):064x}" for _ in range(512)]
        self.users = [f'"0x{self.rng.getrandbits(160):040x}"' for _ in range(64)]
        self.truth: dict[str, dict[int, list[int]]] = {coin: {} for coin in coins}
        self.sent = 0
        self.clients: list[Client] = []

    def trade(self, coin: str, ts_ms: int) -> str:
        rng = self.rng
        self.tid += 1
        ticks = self.ticks[coin] = max(1, self.ticks[coin] + rng.randint(-3, 3))
        size = rng.randint(1, 200_000)
        window = self.truth[coin].setdefault(ts_ms - ts_ms % WINDOW_MS, [ticks, ticks, ticks, 0, 0])
        window[1] = max(window[1], ticks)
        window[2] = min(window[2], ticks)
        window[3] = ticks
        window[4] += size
        users = f'"users":[{self.users[self.tid & 63]},{self.users[(self.tid >> 6) & 63]}]'
        text = (
            f'{{"coin":"{coin}","side":"{"B" if size & 1 else "A"}",'
            f'"px":"{units_text(ticks, PX_DECIMALS.get(coin, 3))}",'
            f'"sz":"{units_text(size, SZ_DECIMALS)}","time":{ts_ms},'
            f'"hash":"{self.hashes[self.tid & 511]}","tid":{self.tid}'
            f"{',' + users if self.with_users else ''}}}"
        )
        self.recent[coin].append(text)
        return text

    def frames(self, counts: dict[str, int], ts_ms: int, one_per_coin: bool) -> bytes:
        out = []
        for coin, count in counts.items():
            trades = [self.trade(coin, ts_ms) for _ in range(count)]
            step = len(trades) if one_per_coin else self.per_frame
            for i in range(0, len(trades), max(1, step)):
                chunk = ",".join(trades[i : i + step])
                out.append(frame_bytes(f'{{"channel":"trades","data":[{chunk}]}}'))
            self.sent += count
        return b"".join(out)

    def on_message(self, client: Client, text: str) -> None:
        try:
            request: Any = json.loads(text)
        except ValueError:
            return
        if request.get("method") == "ping":
            client.send(frame_bytes('{"channel":"pong"}'))
            return
        sub = request.get("subscription") or {}
        if request.get("method") == "subscribe" and sub.get("type") == "trades":
            coin = sub.get("coin")
            answer = {"channel": "subscriptionResponse", "data": request}
            client.send(frame_bytes(json.dumps(answer)))
            if coin in self.recent:
                client.coins.add(coin)
                replay = ",".join(self.recent[coin])
                client.send(frame_bytes(f'{{"channel":"trades","data":[{replay}]}}'))

    def deliver(self, data: bytes) -> None:
        for client in list(self.clients):
            if client.open and client.coins and not client.closed:
                client.send(data)

    def truth_rows(self) -> dict[str, list[list[Any]]]:
        rows = {}
        for coin, windows in self.truth.items():
            dec = PX_DECIMALS.get(coin, 3)
            rows[coin] = [
                [start, *(units_text(w[i], dec) for i in range(4)), units_text(w[4], SZ_DECIMALS)]
                for start, w in sorted(windows.items())
            ]
        return rows


def serve(args: argparse.Namespace) -> None:
    coins = args.coins.split(",")
    feed = Feed(coins, args.rate, args.per_frame, args.seed)
    now = int(time.time() * 1000)
    for coin in coins:  # history for the subscribe replay
        for back in range(REPLAY, 0, -1):
            feed.trade(coin, now - 60_000 - back * 1000)
    listener = socket.create_server(("127.0.0.1", args.port))
    listener.setblocking(False)
    print(f"ready {listener.getsockname()[1]}", flush=True)
    started = threading.Event()
    stopping = threading.Event()

    def control() -> None:
        sys.stdin.readline()
        started.set()
        sys.stdin.readline()
        stopping.set()

    threading.Thread(target=control, daemon=True).start()
    low, high = (int(x) for x in (args.burst_ms.split("-") + [args.burst_ms])[:2])
    owed = 0.0
    last = time.monotonic()
    next_block = last
    while not stopping.is_set():
        readable = [c.sock for c in feed.clients]
        # Bursts: sleep until the next block (the venue is not on this host: polling every ms
        # would take the CPU the pipeline under test needs); even: the trades owed every ms.
        wait_s = 0.001 if low == 0 or not started.is_set() else next_block - time.monotonic()
        ready, _, _ = select.select([listener, *readable], [], [], max(0.0, min(wait_s, 0.05)))
        for sock in ready:
            if sock is listener:
                conn, _ = listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                feed.clients.append(Client(conn))
                continue
            client = next(c for c in feed.clients if c.sock is sock)
            for text in client.messages():
                feed.on_message(client, text)
        for client in [c for c in feed.clients if c.closed]:
            client.sock.close()
            feed.clients.remove(client)
        now_s = time.monotonic()
        if not started.is_set():
            last = next_block = now_s
            continue
        if low == 0:  # even: every ms, the trades due so far, per_frame to a frame
            owed += (now_s - last) * feed.rate
            last = now_s
            each = int(owed) // len(coins)
            each -= each % feed.per_frame  # whole frames of per_frame trades
            if not each:
                continue
            owed -= each * len(coins)
            counts = {coin: each for coin in coins}
            feed.deliver(feed.frames(counts, int(time.time() * 1000), False))
        elif now_s >= next_block:  # one frame per coin per block
            block_s = now_s - last
            last = now_s
            next_block = now_s + feed.rng.uniform(low, high) / 1000
            owed += block_s * feed.rate
            each = int(owed) // len(coins)
            owed -= each * len(coins)
            counts = {coin: each for coin in coins}
            feed.deliver(feed.frames(counts, int(time.time() * 1000), True))
    if args.truth:
        Path(args.truth).write_text(json.dumps({"sent": feed.sent, "rows": feed.truth_rows()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--coins", default="BTC,ETH,SOL,XRP,DOGE")
    parser.add_argument("--rate", type=float, default=100_000)
    parser.add_argument("--per-frame", type=int, default=5)
    parser.add_argument("--burst-ms", default="0", help="0 (even) or LOW-HIGH, e.g. 70-100")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--truth", default="")
    serve(parser.parse_args())


if __name__ == "__main__":
    main()
