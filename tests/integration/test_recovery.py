"""An ingest gap (trades the feed never delivered) end to end, against the fake exchange under
supervisord: the 1m window over the gap is partial and the writer replaces it by the
exchange's candle; the 5s rows it made wrong are never silent (the `.inexact` journal)."""

from __future__ import annotations

import pytest

from hlstream.common import inexact_io
from hlstream.sim.market import truth_rows
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline, assert_contiguous, read_rows
from tests.support.recovery import S5, M, check_1m_exact, now_ms
from tests.support.wait import wait_for

pytestmark = pytest.mark.long(90)

BLACKHOLE_TRADES = 40

exchange = exchange_fixture(
    coins=["BTC", "ETH", "ETHFI"], rate_per_coin=5.0, seed=23, history_hours=0.5, paused=True
)


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
        wait_for(  # more than the venue's 30-trade subscribe replay can cover
            lambda: all(
                sum(t["time"] >= hole_from for t in exchange.trades(c)) > BLACKHOLE_TRADES
                for c in coins
            ),
            30,
            "trades sent into the blackhole",
        )
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
    # 5s windows inside the blackhole either closed (as complete) before the replay proved
    # the gap, which the aggregator says loudly (gap_after_close), or were held while the
    # silent link's ping was out and are partial. Neither can be repaired (no 5s candles).
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
    assert "is not exact: " in verify.stdout
