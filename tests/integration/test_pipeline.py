"""End to end: fake exchange -> ingest -> aggregator -> writer under supervisord.

Every CSV row must equal the truth computed from the fake's own trade log (carry-forward
rows included), with the exact header, no duplicates and no holes; the 1m files start
with REST-backfilled history equal to the fake's candles.
"""

from __future__ import annotations

import time

import pytest

from hlstream.sim.exchange import FakeExchange
from hlstream.sim.market import truth_rows
from tests.integration.harness import Pipeline, assert_contiguous, read_rows, wait_for

COINS = ("BTC", "ETH", "SOL")
QUIET = "SOL"


@pytest.fixture
def exchange():
    fake = FakeExchange(coins=list(COINS), rate_per_coin=6.0, seed=11, history_hours=1.0)
    fake.pause_trades(True)
    fake.start()
    yield fake
    fake.stop()


def test_pipeline_writes_exact_bars_with_backfill_and_carry_forward(exchange, tmp_path):
    pipeline = Pipeline(
        exchange, tmp_path, coins=",".join(COINS), intervals="5s,1m", backfill_hours="1"
    ).start()
    try:
        pipeline.wait_ready()
        exchange.pause_trades(False)
        started = time.monotonic()
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "5s"))) >= 2, 20, "first 5s rows")
        exchange.set_quiet(QUIET, True)
        time.sleep(17)  # spans at least two whole 5 s windows
        exchange.set_quiet(QUIET, False)
        time.sleep(max(0.0, 32 - (time.monotonic() - started)))
        exchange.pause_trades(True)
        time.sleep(8)  # let the last windows close (5 s + grace) and reach the disk
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]

    for coin in COINS:
        trades = exchange.trades(coin)
        for interval, interval_ms in (("5s", 5_000), ("1m", 60_000)):
            rows = read_rows(pipeline.csv(coin, interval))
            assert rows, f"{coin} {interval} has no rows"
            assert_contiguous(rows, interval_ms, f"{coin}_{interval}")
            truth = truth_rows(trades, interval_ms, rows[0][0], rows[-1][0] + interval_ms)
            assert [tuple(r) for r in truth] == rows, f"{coin} {interval} differs from truth"
        assert len(read_rows(pipeline.csv(coin, "1m"))) >= 55, "1h of 1m history backfilled"
        assert len(read_rows(pipeline.csv(coin, "5s"))) >= 5

    quiet_rows = read_rows(pipeline.csv(QUIET, "5s"))
    carried = [r for r in quiet_rows if r[5] == "0.0"]
    assert len(carried) >= 2, "quiet coin produced carry-forward rows"
    for row in carried:
        assert row[1] == row[2] == row[3] == row[4]
