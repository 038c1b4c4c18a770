"""Fault: the venue serves candles that disagree with the trades it sent. The writer's live
audit (a live minute or two, so it runs with `make test-faults`; test_audit_faults.py drives
the same auditor against the fake venue in seconds): a coin whose candles the venue serves
differently (volume, n) gets revisions for its 1m rows and its 5s minutes journaled as
`venue_mismatch`; a coin that matches is left alone; `hlstream repair` applies them."""

from __future__ import annotations

from hlstream.common import inexact_io, revisions_io
from hlstream.common.csvrow import Row
from hlstream.sim.market import truth_rows
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline, read_rows
from tests.support.recovery import S5, M
from tests.support.wait import wait_for

VENUE_VOLUME = "999999.0"

exchange = exchange_fixture(coins=["BTC", "ETH"], rate_per_coin=4.0, seed=41, history_hours=0.2)


def test_the_audit_revises_exactly_the_rows_the_venue_disagrees_with(exchange, tmp_path):
    exchange.set_candle_edit("ETH", {"v": VENUE_VOLUME, "n": 1})
    pipeline = Pipeline(
        exchange,
        tmp_path,
        coins="BTC,ETH",
        intervals="5s,1m",
        backfill_hours="0.05",
        audit_settle_seconds="1",
    ).start()
    eth_1m, eth_5s = pipeline.csv("ETH", "1m"), pipeline.csv("ETH", "5s")
    try:
        pipeline.wait_ready()

        def audited() -> bool:
            status = pipeline.status("writer")
            counters = status.counters if status else {}
            return (
                bool(revisions_io.read(eth_1m))
                and "venue_mismatch" in inexact_io.read_journal(eth_5s).values()
                and counters.get("rows_matched", 0) >= 12 + 1  # BTC: a minute of 5s, a 1m row
            )

        wait_for(audited, 200, "a mismatch of each kind and BTC's rows matched")
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]

    writer_log = (pipeline.run_dir / "logs" / "writer.log").read_text()
    assert "event=venue_mismatch" in writer_log
    for interval in ("5s", "1m"):
        assert not revisions_io.read(pipeline.csv("BTC", interval)), "BTC matches the venue"
        journal = inexact_io.read_journal(pipeline.csv("BTC", interval))
        assert "venue_mismatch" not in journal.values()
    revisions = revisions_io.read(eth_1m)
    trades = exchange.trades("ETH")
    truth = {r[0]: Row(*r) for r in truth_rows(trades, M, 0, trades[-1]["time"] + M)}
    for revision in revisions:
        assert revision.old == truth[revision.old.start_ms], "our row was right all along"
        assert revision.new.volume == VENUE_VOLUME and revision.reason == "venue_mismatch"
    flagged = sorted(s for s, r in inexact_io.read_journal(eth_5s).items() if r == "venue_mismatch")
    assert len(flagged) % 12 == 0 and flagged[0] % M == 0 and flagged[11] == flagged[0] + 11 * S5

    repair = pipeline.cli("repair", "--coins", "BTC,ETH", "--intervals", "5s,1m")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    repaired = {row[0]: row for row in read_rows(eth_1m)}
    assert all(repaired[rev.old.start_ms][5] == VENUE_VOLUME for rev in revisions)
    assert pipeline.cli("repair", "--coins", "ETH", "--intervals", "1m").returncode == 0
