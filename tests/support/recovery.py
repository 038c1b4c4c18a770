"""Helpers for kill/restart scenarios against a running pipeline: stage pids, kill -9 and
wait for the restart, a live bar tap, and row-for-row checks against the fake's truth."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import msgpack
import zmq

from hlstream.common.clock import now_ms
from hlstream.sim.exchange import FakeExchange
from hlstream.sim.market import truth_rows
from tests.support.pipeline import Pipeline, assert_contiguous, read_rows
from tests.support.wait import wait_for

S5, M = 5_000, 60_000
GRACE_MS = 2_000


class BarTap:
    """A SUB socket on the aggregator's bar PUB, recording every bar in a thread."""

    def __init__(self, endpoint: str, topics: list[str]) -> None:
        self.context: zmq.Context[Any] = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        for topic in topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.socket.connect(endpoint)
        self.bars: list[tuple[str, dict[str, Any]]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            if self.socket.poll(100):
                topic, payload = self.socket.recv_multipart()
                self.bars.append((topic.decode(), msgpack.unpackb(payload, raw=False)))

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.socket.close(linger=0)
        self.context.term()


def stage_pid(pipeline: Pipeline, stage: str) -> int:
    text = pipeline.supervisorctl("pid", stage).strip()
    return int(text) if text.isdigit() else 0


def kill_and_wait_restart(pipeline: Pipeline, stage: str) -> tuple[int, int]:
    """SIGKILL one stage; wait until supervisord runs a new one that is serving again."""
    old = wait_for(lambda: stage_pid(pipeline, stage), 20, f"{stage} running")
    killed_ms = now_ms()
    os.kill(old, signal.SIGKILL)
    new = wait_for(
        lambda: (p := stage_pid(pipeline, stage)) and p != old and p, 30, f"{stage} restarted"
    )
    if stage == "writer":
        wait_for(lambda: getattr(pipeline.status("writer"), "pid", None) == new, 30, "new writer")
    else:
        mark = now_ms()
        wait_for(
            lambda: getattr(pipeline.status(stage), "ts_ms", 0) > mark, 30, f"new {stage} heartbeat"
        )
    return killed_ms, now_ms()


def wait_minute_on_disk(
    pipeline: Pipeline, coins: tuple[str, ...], at_ms: int, timeout_s: float
) -> None:
    """Until every coin's 1m file has the row of the minute holding `at_ms`."""
    window = at_ms - at_ms % M
    for coin in coins:
        wait_for(
            lambda c=coin: window in {r[0] for r in read_rows(pipeline.csv(c, "1m"))},
            timeout_s,
            f"{coin} 1m row of {window} on disk",
        )


def check_1m_exact(pipeline: Pipeline, exchange: FakeExchange, coins: tuple[str, ...]) -> None:
    for coin in coins:
        check_exact(pipeline, exchange, coin, M)


def check_exact(pipeline: Pipeline, exchange: FakeExchange, coin: str, interval_ms: int) -> int:
    """Every row of the coin's file equals the truth from the fake's trade log; row count."""
    name = "5s" if interval_ms == S5 else "1m"
    rows = read_rows(pipeline.csv(coin, name))
    assert rows, f"{coin} {name} has no rows"
    assert_contiguous(rows, interval_ms, f"{coin}_{name}")
    truth = truth_rows(exchange.trades(coin), interval_ms, rows[0][0], rows[-1][0] + interval_ms)
    wrong = [(row, want) for row, want in zip(rows, truth, strict=True) if row != want]
    assert not wrong, f"{coin} {name}: {len(wrong)} of {len(rows)} rows differ, first {wrong[:3]}"
    return len(rows)
