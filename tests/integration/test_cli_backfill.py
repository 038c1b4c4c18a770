"""`hlstream backfill` against a FakeExchange: fills from REST, shows progress, is idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hlstream.sim.market import truth_rows
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import assert_contiguous, read_rows

exchange = exchange_fixture(
    coins=["BTC", "ETH"],
    rate_per_coin=2.0,
    seed=3,
    history_hours=2.0,
    history_gap_s=0.0,
    scope="module",
    paused=True,
)


def backfill(exchange, tmp_path, *args):
    env = dict(
        os.environ,
        HLSTREAM_INFO_URL=exchange.info_url,
        HLSTREAM_WS_URL=exchange.ws_url,
        HLSTREAM_DATA_DIR=str(tmp_path / "data"),
        HLSTREAM_RUN_DIR=str(tmp_path / "run"),
    )
    return subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "backfill", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _wait_for_quiet_second():
    """Run where no window boundary (plus the writer's settle margin) falls in the next 10 s."""
    while not 5 <= time.time() % 60 <= 45:
        time.sleep(0.5)


def test_backfill_twice_writes_the_same_files(exchange, tmp_path):
    args = ("--coins", "BTC,ETH", "--intervals", "5s,1m,5m", "--hours", "1")
    _wait_for_quiet_second()
    first = backfill(exchange, tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert "backfill [" in first.stderr and "4/4 files" in first.stderr
    assert "skipping 5s" in first.stderr
    files = sorted((tmp_path / "data").glob("*.csv"))
    assert [f.name for f in files] == [
        "btc_1m_data.csv",
        "btc_5m_data.csv",
        "eth_1m_data.csv",
        "eth_5m_data.csv",
    ]
    before = {f.name: f.read_bytes() for f in files}

    second = backfill(exchange, tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert "0 row(s) written" in second.stdout
    assert {f.name: f.read_bytes() for f in files} == before

    rows = read_rows(tmp_path / "data" / "btc_1m_data.csv")
    assert len(rows) >= 55
    assert_contiguous(rows, 60_000, "btc_1m")
    truth = truth_rows(exchange.trades("BTC"), 60_000, rows[0][0], rows[-1][0] + 60_000)
    assert [tuple(r) for r in truth] == rows


def test_backfill_rest_failure_exits_1(tmp_path):
    env = dict(
        os.environ,
        HLSTREAM_INFO_URL="http://127.0.0.1:9",
        HLSTREAM_BACKFILL_HOURS="1",
        HLSTREAM_DATA_DIR=str(tmp_path / "data"),
        HLSTREAM_RUN_DIR=str(tmp_path / "run"),
        HLSTREAM_BACKOFF_BASE_SECONDS="0.01",
        HLSTREAM_BACKOFF_CAP_SECONDS="0.1",
    )
    result = subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "backfill", "--coins", "BTC", "--intervals", "1m"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "FAILED btc_1m_data.csv" in result.stderr
