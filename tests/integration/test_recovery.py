"""Recovery end to end: `kill -9` of the writer and of the aggregator mid-stream, and an ingest
gap (trades the feed never delivered), against the fake exchange under supervisord.

What must hold afterwards (DESIGN.md "Correctness target"):
- 1m files: every row equals the truth computed from the fake's own trade log, because
  windows the aggregator did not watch whole are partial and the writer replaces them by the
  exchange's settled candle, and holes are repaired from REST;
- 5s files (no REST candles): exact header, no duplicates, no holes, strictly increasing;
  every bar the aggregator published as complete is on disk as published and equals truth;
  rows outside the windows around an aggregator kill equal truth.
Bars are tapped live on `bar.{interval}.{coin}|`, which also checks that the topics are
prefix-safe (`ETH|` never delivers `ETHFI`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import msgpack
import pytest
import zmq

from hlstream.common import inexact_io
from hlstream.sim.exchange import FakeExchange
from hlstream.sim.market import truth_rows
from tests.integration.harness import Pipeline, assert_contiguous, read_rows, wait_for

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


def now_ms() -> int:
    return int(time.time() * 1000)


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
        rows = read_rows(pipeline.csv(coin, "1m"))
        assert rows, f"{coin} 1m has no rows"
        assert_contiguous(rows, M, f"{coin}_1m")
        truth = truth_rows(exchange.trades(coin), M, rows[0][0], rows[-1][0] + M)
        assert truth == rows, f"{coin} 1m differs from truth"


@pytest.fixture
def exchange():
    fake = FakeExchange(
        coins=["BTC", "ETH", "ETHFI"], rate_per_coin=5.0, seed=23, history_hours=0.5
    )
    fake.pause_trades(True)
    fake.start()
    yield fake
    fake.stop()


@pytest.mark.faults  # ~100 s: needs a whole 1m window after the restarts
def test_kill_9_writer_and_aggregator_mid_stream_keeps_files_exact(exchange, tmp_path):
    coins = ("BTC", "ETH", "ETHFI")
    pipeline = Pipeline(
        exchange, tmp_path, coins=",".join(coins), intervals="5s,1m", backfill_hours="0.25"
    ).start()
    tap = None
    outages: list[tuple[int, int]] = []  # aggregator (killed_ms, back_ms)
    try:
        pipeline.wait_ready()
        tap = BarTap(
            f"ipc://{pipeline.run_dir / 'bars.sock'}", ["bar.5s.ETH|", "bar.1m.ETH|", "bar.5s.BTC|"]
        )
        exchange.pause_trades(False)
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "5s"))) >= 2, 30, "first 5s rows")
        for _ in range(3):
            kill_and_wait_restart(pipeline, "writer")
            time.sleep(2.5)  # bars pile up in the aggregator's outbox meanwhile
        for _ in range(2):
            outages.append(kill_and_wait_restart(pipeline, "aggregator"))
            time.sleep(4)
        # Let the 1m window of the last aggregator restart close (partial -> REST candle).
        wait_minute_on_disk(pipeline, coins, outages[-1][1], 75)
    finally:
        if tap is not None:
            tap.close()
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]

    check_1m_exact(pipeline, exchange, coins)
    minute_rows = {r[0] for r in read_rows(pipeline.csv("BTC", "1m"))}
    for _killed, back in outages:
        assert back - back % M in minute_rows, "the restart's partial 1m window is on disk"

    def affected(start: int) -> bool:  # windows the aggregator did not watch whole
        return any(
            start + S5 > killed - GRACE_MS - S5 and start < back + S5 for killed, back in outages
        )

    published = {}
    for topic, bar in tap.bars:
        assert topic == f"bar.{bar['interval']}.{bar['coin']}|", topic
        assert bar["coin"] != "ETHFI", "ETH| must never deliver ETHFI"
        published[(bar["coin"], bar["interval"], bar["start_ms"])] = bar
    assert any(b["complete"] for b in published.values())
    # With the tape and checkpoints, restarts no longer make bars partial.

    for coin in coins:
        rows = read_rows(pipeline.csv(coin, "5s"))
        assert len(rows) >= 6
        assert_contiguous(rows, S5, f"{coin}_5s")
        truth = {
            r[0]: r for r in truth_rows(exchange.trades(coin), S5, rows[0][0], rows[-1][0] + S5)
        }
        for row in rows:
            bar = published.get((coin, "5s", row[0]))
            if bar is not None and bar["complete"]:
                as_published = (
                    bar["start_ms"],
                    bar["open"],
                    bar["high"],
                    bar["low"],
                    bar["close"],
                    bar["volume"],
                )
                assert row == as_published == truth[row[0]], f"{coin} 5s complete bar {row}"
            elif not affected(row[0]) and row[0] > rows[0][0]:
                assert row == truth[row[0]], f"{coin} 5s row {row} outside outages"


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


@pytest.mark.faults  # ~110 s: a whole 1m window after the last kill
def test_kill_9_of_each_stage_keeps_every_5s_and_1m_row_exact(exchange, tmp_path):
    """The trade tape and the aggregator's checkpoint make every restart exact, for 5s too:
    no window is partial, none is repaired from REST, every row equals the fake's truth."""
    coins = ("BTC", "ETH")
    pipeline = Pipeline(
        exchange, tmp_path, coins=",".join(coins), intervals="5s,1m", backfill_hours="0.25"
    ).start()
    kills: list[tuple[int, int]] = []
    try:
        pipeline.wait_ready()
        exchange.pause_trades(False)
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "5s"))) >= 2, 30, "first 5s rows")
        for stage in ("aggregator", "ingest", "writer"):
            kills.append(kill_and_wait_restart(pipeline, stage))
            time.sleep(3)
        wait_minute_on_disk(pipeline, coins, kills[-1][1], 80)
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]
    for coin in coins:
        assert check_exact(pipeline, exchange, coin, S5) >= 6
        assert check_exact(pipeline, exchange, coin, M) >= 2
    five_s = {r[0] for r in read_rows(pipeline.csv("BTC", "5s"))}
    for killed, back in kills:  # the windows spanning each kill are there and were checked
        assert killed - killed % S5 in five_s and back - back % S5 in five_s
    logs = pipeline.run_dir / "logs"
    assert "partial_replaced_by_rest" not in (logs / "writer.log").read_text()
    assert "partial_bar" not in (logs / "aggregator.log").read_text()


def test_ingest_gap_makes_1m_bar_partial_and_writer_replaces_it_by_rest_candle(exchange, tmp_path):
    coins = ("BTC", "ETH")
    pipeline = Pipeline(
        exchange, tmp_path, coins=",".join(coins), intervals="5s,1m", backfill_hours="0.25"
    ).start()
    try:
        pipeline.wait_ready()
        exchange.set_rate(8.0)  # > 30 trades (the subscribe replay) during the blackhole
        exchange.pause_trades(False)
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "5s"))) >= 2, 30, "first 5s rows")
        # The blackhole and the reconnect must fall inside one 1m window, so that window is
        # still open when the gap marker arrives.
        wait_for(lambda: 2_000 <= now_ms() % M <= 42_000, 65, "not late in a minute")
        hole_from = now_ms()
        exchange.set_blackhole(None, True)
        time.sleep(10)
        exchange.drop_connections()
        exchange.set_blackhole(None, False)
        window = hole_from - hole_from % M
        for coin in coins:
            wait_for(
                lambda c=coin: window in {r[0] for r in read_rows(pipeline.csv(c, "1m"))},
                80,
                "gap window on disk",
            )
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]

    logs = pipeline.run_dir / "logs"
    assert "event=gap " in (logs / "ingest.log").read_text()
    aggregator_log = (logs / "aggregator.log").read_text()
    assert "event=gap_marker" in aggregator_log
    # Known limit: 5s windows inside the blackhole closed (as complete) before the replay
    # proved the gap; the aggregator says so loudly. They cannot be repaired (no 5s candles).
    assert "event=gap_after_close" in aggregator_log
    writer_log = (logs / "writer.log").read_text()
    replaced = [
        line
        for line in writer_log.splitlines()
        if "event=partial_replaced_by_rest" in line and f"start_ms={window}" in line
    ]
    assert len(replaced) == len(coins), "each coin's gap window was replaced by its candle"
    check_1m_exact(pipeline, exchange, coins)
    for coin in coins:
        assert window in {r[0] for r in read_rows(pipeline.csv(coin, "1m"))}
        rows = read_rows(pipeline.csv(coin, "5s"))
        assert_contiguous(rows, S5, f"{coin}_5s")
        # The blackhole's 5s rows miss trades and cannot be repaired: never silently.
        truth = {
            r[0]: r for r in truth_rows(exchange.trades(coin), S5, rows[0][0], rows[-1][0] + 1)
        }
        wrong = {row[0] for row in rows if row != truth[row[0]]}
        journal = inexact_io.read_journal(pipeline.csv(coin, "5s"))
        assert wrong, "the blackhole made some 5s rows wrong"
        assert wrong <= set(journal), f"{coin}: wrong 5s rows missing from the journal"
        assert set(journal.values()) <= {"gap_after_close", "partial"}
        assert not inexact_io.read_journal(pipeline.csv(coin, "1m")), "1m repaired from REST"
    verify = pipeline.cli("verify")
    assert verify.returncode == 1
    assert "is not exact: gap_after_close" in verify.stdout


@pytest.mark.faults  # ~90 s: needs a whole 1m window after the restarts
def test_hlstream_restart_of_each_stage_keeps_files_exact(exchange, tmp_path):
    coins = ("BTC", "ETH")
    pipeline = Pipeline(
        exchange, tmp_path, coins=",".join(coins), intervals="5s,1m", backfill_hours="0.25"
    ).start()
    try:
        pipeline.wait_ready()
        exchange.pause_trades(False)
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "5s"))) >= 2, 30, "first 5s rows")
        back_ms = 0
        for stage in ("ingest", "aggregator", "writer"):
            old = stage_pid(pipeline, stage)
            result = subprocess.run(
                [sys.executable, "-m", "hlstream.cli", "restart", stage],
                env=pipeline.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            wait_for(
                lambda s=stage, o=old: stage_pid(pipeline, s) not in (0, o),
                30,
                f"{stage} restarted",
            )
            back_ms = now_ms()
            time.sleep(3)
        wait_minute_on_disk(pipeline, coins, back_ms, 80)
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]
    check_1m_exact(pipeline, exchange, coins)
    for coin in coins:
        rows = read_rows(pipeline.csv(coin, "5s"))
        assert len(rows) >= 10
        assert_contiguous(rows, S5, f"{coin}_5s")
