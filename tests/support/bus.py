"""A SUB socket on ingest's trades endpoint that collects decoded bus messages (tests only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq

from hlstream.common.messages import Trade
from hlstream.common.tape.readers_io import read_span

Key = tuple[str, int, int]


class Bus:
    """A SUB on ingest's endpoint collecting (topic, decoded payload)."""

    def __init__(self, run_dir: Path, prefixes: tuple[str, ...] = ("trade.", "gap.", "status.")):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 20)
        self.socket.setsockopt(zmq.LINGER, 0)
        for prefix in prefixes:
            self.socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self.socket.connect(f"ipc://{run_dir}/trades.sock")
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def poll_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.socket.poll(int(min(left, 0.1) * 1000)):
                topic, payload = self.socket.recv_multipart()
                self.messages.append((topic.decode(), msgpack.unpackb(payload, raw=False)))
        return True

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [body for _, body in self.messages if body["type"] == kind]

    def trade_keys(self) -> list[Key]:
        return [
            (t["coin"], t["ts_ms"], t["tid"]) for m in self.of_type("trades") for t in m["trades"]
        ]

    def trade_keys_with_missed(self, data_dir: Path) -> list[Key]:
        """`trade_keys`, plus the trades of messages this SUB missed, as a tap catching up
        from the tape gets them: a message's `seq` one past its topic's last in its session
        says none was missed; a larger one (a SUB reconnecting to a restarted ingest misses
        its first messages: ZeroMQ's slow joiner) means the tape bytes between the coin's
        last span and this one's hold the missed trades."""
        keys: list[Key] = []
        seqs: dict[tuple[str, str], int] = {}
        ends: dict[tuple[str, str], int] = {}
        for topic, body in self.messages:
            if body["type"] != "trades":
                continue
            coin, (day, start, end) = body["coin"], body["tape"]
            if body["seq"] > seqs.get((body["session"], topic), 0) + 1 and (coin, day) in ends:
                missed = read_span(data_dir, coin, day, ends[(coin, day)], start)
                keys += [(r.coin, r.ts_ms, r.tid) for r, _ in missed if isinstance(r, Trade)]
            seqs[(body["session"], topic)] = body["seq"]
            ends[(coin, day)] = end
            keys += [(t["coin"], t["ts_ms"], t["tid"]) for t in body["trades"]]
        return keys

    def coins_after(self, ts_ms: int) -> set[str]:
        return {coin for coin, ts, _ in self.trade_keys() if ts > ts_ms}

    def sessions(self) -> set[str]:
        return {body["session"] for body in self.of_type("status")}

    def close(self) -> None:
        self.socket.close()
        self.context.term()
