"""kill -9 and `hlstream restart` of each stage mid-stream, against the fake exchange under
supervisord: every 1m row equals the truth from the fake's own trade log (windows a stage did
not watch whole are repaired from the exchange's candles), and 5s rows are exact wherever the
tape covers them. Bars are tapped live on `bar.{interval}.{coin}|`, which also checks that the
topics are prefix-safe (`ETH|` never delivers `ETHFI`)."""

from __future__ import annotations

import subprocess
import sys
import time

from hlstream.sim.market import truth_rows
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline, assert_contiguous, read_rows
from tests.support.recovery import (
    GRACE_MS,
    S5,
    BarTap,
    M,
    check_1m_exact,
    check_exact,
    kill_and_wait_restart,
    now_ms,
    stage_pid,
    wait_minute_on_disk,
)
from tests.support.wait import wait_for

exchange = exchange_fixture(
    coins=["BTC", "ETH", "ETHFI"], rate_per_coin=5.0, seed=23, history_hours=0.5, paused=True
)


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
