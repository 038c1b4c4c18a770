"""A silence that ends on its own, end to end against the fake exchange: the feed loses every
frame (and our ping) for a moment, then resumes on the same socket. Ingest finds the link dead
by its unanswered ping, reconnects, and marks the silence as a gap, so the 5s rows over it are
exact or journaled in `.inexact`: never complete but short."""

from __future__ import annotations

import pytest

from hlstream.common import inexact_io
from hlstream.sim.market import truth_rows
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline, assert_contiguous, read_rows
from tests.support.recovery import S5, now_ms
from tests.support.wait import wait_for

pytestmark = pytest.mark.long(30)

IDLE_PING_S = 0.5
PONG_TIMEOUT_S = 1.5
ZOMBIE_S = 1.6  # longer than the idle ping, shorter than idle ping + pong timeout

exchange = exchange_fixture(coins=["BTC", "ETH"], rate_per_coin=8.0, seed=31, history_hours=0.2)


def reconnects(pipeline: Pipeline) -> int:
    status = pipeline.status("ingest")
    return int(status.counters.get("reconnects", 0)) if status else 0


def test_a_lossy_silence_that_resumes_is_found_by_the_ping_and_never_silent(exchange, tmp_path):
    coins = ("BTC", "ETH")
    pipeline = Pipeline(
        exchange,
        tmp_path,
        coins=",".join(coins),
        intervals="5s",
        backfill_hours="0.05",
        stale_seconds="90",
        idle_ping_seconds=str(IDLE_PING_S),
        pong_timeout_seconds=str(PONG_TIMEOUT_S),
    ).start()
    try:
        pipeline.wait_ready()
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "5s"))) >= 2, 30, "first 5s rows")
        before = reconnects(pipeline)
        silent_from = now_ms()
        exchange.set_zombie(True)  # frames and pings are lost; the socket stays open
        wait_for(lambda: now_ms() - silent_from >= ZOMBIE_S * 1000, 5, "the silence")
        exchange.set_zombie(False)  # the feed resumes on the same socket
        wait_for(lambda: reconnects(pipeline) > before, 20, "the dead link replaced")
        detected_ms = now_ms() - silent_from
        after = now_ms()
        for coin in coins:
            wait_for(
                lambda c=coin: read_rows(pipeline.csv(c, "5s"))[-1][0] > after + S5,
                40,
                "5s rows after the reconnect",
            )
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]

    ingest_log = (pipeline.run_dir / "logs" / "ingest.log").read_text()
    assert "event=ws_pong_timeout" in ingest_log
    assert "reason=silent_link" in ingest_log
    assert "event=ws_stale" not in ingest_log
    assert detected_ms < (IDLE_PING_S + PONG_TIMEOUT_S + 5.0) * 1000, detected_ms
    for coin in coins:
        rows = read_rows(pipeline.csv(coin, "5s"))
        assert_contiguous(rows, S5, f"{coin}_5s")
        truth = {
            r[0]: r for r in truth_rows(exchange.trades(coin), S5, rows[0][0], rows[-1][0] + 1)
        }
        wrong = {row[0] for row in rows if row != truth[row[0]]}
        journal = inexact_io.read_journal(pipeline.csv(coin, "5s"))
        assert wrong <= set(journal), f"{coin}: 5s rows written complete but short"
        silence = {start for start in journal if silent_from - S5 < start <= silent_from + 5 * S5}
        assert silence, f"{coin}: the rows over the silence are journaled"
