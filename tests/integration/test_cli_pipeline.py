"""`hlstream status / tap / backfill / verify` and the metrics exporter against one live pipeline.

One module-scoped pipeline (fake exchange, BTC/ETH/ETHFI, 5s+1m bars) serves every test; the
test that stops the writer runs last.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from hlstream.sim.exchange import FakeExchange
from tests.support.net import free_port
from tests.support.pipeline import Pipeline, read_rows
from tests.support.wait import wait_for

COINS = ("BTC", "ETH", "ETHFI")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    exchange = FakeExchange(coins=list(COINS), rate_per_coin=6.0, seed=5, history_hours=1.0)
    exchange.start()
    port = free_port()
    running = Pipeline(
        exchange,
        tmp_path_factory.mktemp("cli"),
        coins=",".join(COINS),
        intervals="5s,1m",
        backfill_hours="1",
        metrics_port=str(port),
        book_coins="BTC",
    )
    running.metrics_port = port
    running.start()
    try:
        running.wait_ready()
        for coin in COINS:
            wait_for(lambda c=coin: read_rows(running.csv(c, "5s")), 20, f"{coin} 5s rows")
        wait_for(
            lambda: all(
                f.last_start_ms for f in getattr(running.status("writer"), "files", {}).values()
            ),
            5,
            "writer status with every file's last row",
        )
        yield running
    finally:
        code, output = running.stop()
        exchange.stop()
    assert code == 0, output[-3000:]


def hlstream(
    pipeline: Pipeline, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return pipeline.cli(*args, timeout_s=timeout)


def test_status_json_reports_a_healthy_pipeline(pipeline):
    result = hlstream(pipeline, "status", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report["problems"]
    assert report["healthy"] and report["supervisord"]
    assert {name: stage["state"] for name, stage in report["stages"].items()} == {
        "ingest": "RUNNING",
        "aggregator": "RUNNING",
        "writer": "RUNNING",
    }
    assert all(stage["status_age_s"] < 5 for stage in report["stages"].values())
    assert report["coins"]["BTC"]["last_trade_age_s"] < 10
    names = {f"{coin.lower()}_{interval}_data.csv" for coin in COINS for interval in ("5s", "1m")}
    assert set(report["files"]) == names
    assert report["files"]["btc_5s_data.csv"]["last_datetime"]
    assert set(report["counters"]) >= {
        "reconnects",
        "gaps",
        "partial_bars",
        "late_trades",
        "malformed",
    }


def test_status_table_for_humans(pipeline):
    result = hlstream(pipeline, "status")
    assert result.returncode == 0, result.stdout
    assert "HEALTHY" in result.stdout and "btc_5s_data.csv" in result.stdout


def test_tap_trades_prints_one_json_line_per_message(pipeline):
    result = hlstream(pipeline, "tap", "trades", "BTC", "--count", "3", "--json", "--timeout", "15")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        message = json.loads(line)
        assert message["topic"] == "trade.BTC|" and message["type"] == "trades"
        assert {trade["coin"] for trade in message["trades"]} == {"BTC"}


def test_tap_eth_never_shows_ethfi(pipeline):
    result = hlstream(pipeline, "tap", "trades", "ETH", "--count", "8", "--timeout", "15")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == 8
    assert all(line.split()[2] == "ETH" for line in lines), lines


def test_tap_bars_of_one_interval(pipeline):
    result = hlstream(
        pipeline, "tap", "bars", "BTC", "--interval", "5s", "--count", "1", "--timeout", "15"
    )
    assert result.returncode == 0, result.stderr
    assert " BTC 5s O=" in result.stdout


def test_tap_book_prints_best_bid_and_ask(pipeline):
    result = hlstream(pipeline, "tap", "book", "BTC", "--count", "1", "--timeout", "15")
    assert result.returncode == 0, result.stderr
    assert " BTC book bid " in result.stdout and " ask " in result.stdout


def test_tap_times_out_with_exit_1_when_nothing_arrives(pipeline):
    result = hlstream(pipeline, "tap", "gaps", "BTC", "--count", "1", "--timeout", "1")
    assert result.returncode == 1 and result.stdout == ""


def test_tap_of_a_coin_not_streamed_says_so_with_exit_2(pipeline):
    result = hlstream(pipeline, "tap", "trades", "btc", "--count", "1", "--timeout", "15")
    assert result.returncode == 2 and result.stdout == ""
    assert "did you mean BTC?" in result.stderr


def test_metrics_exporter_serves_the_status_figures(pipeline):
    url = f"http://127.0.0.1:{pipeline.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'hlstream_stage_running{stage="writer"} 1.0' in text
    assert "hlstream_healthy 1.0" in text
    assert 'hlstream_file_behind_seconds{coin="BTC",file="btc_5s_data.csv",interval="5s"}' in text
    assert 'hlstream_last_trade_age_seconds{coin="ETHFI"}' in text


def test_backfill_while_running_is_harmless_and_files_verify_clean(pipeline):
    result = hlstream(pipeline, "backfill", "--hours", "1")
    assert result.returncode == 0, result.stderr
    assert "backfill [" in result.stderr and "skipping 5s" in result.stderr
    verify = hlstream(pipeline, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "6 files" in verify.stderr


def test_rebuild_while_running_checks_live_files_and_never_replaces_them(pipeline):
    before = pipeline.csv("BTC", "5s").read_bytes()
    refused = hlstream(pipeline, "rebuild", "--interval", "5s")
    assert refused.returncode == 78
    assert "the running writer appends to the 5s files" in refused.stderr
    checked = hlstream(pipeline, "rebuild", "--interval", "5s", "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" 0 differ, 0 missing") == len(COINS)
    assert pipeline.csv("BTC", "5s").read_bytes().startswith(before)
    other = hlstream(pipeline, "rebuild", "--interval", "10s", "--coins", "BTC")
    assert other.returncode == 0, other.stdout + other.stderr  # not a live interval: allowed
    assert read_rows(pipeline.csv("BTC", "10s"))


def test_rebuild_rejects_bad_input_in_one_line(pipeline):
    for args, message in (
        (["--interval", "7s"], "does not divide a day evenly"),
        (["--interval", "5s", "--from", "yesterday"], "--from 'yesterday'"),
    ):
        result = hlstream(pipeline, "rebuild", *args)
        assert result.returncode == 78, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_status_reflects_a_stopped_writer(pipeline):
    pipeline.supervisorctl("stop", "writer")
    try:
        result = hlstream(pipeline, "status", "--json")
        report = json.loads(result.stdout)
        assert result.returncode == 1
        assert report["stages"]["writer"]["state"] == "STOPPED"
        assert not report["healthy"] and "stage writer is STOPPED" in report["problems"]
    finally:
        pipeline.supervisorctl("start", "writer")
