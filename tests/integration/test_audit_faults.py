"""The writer's auditor (auditor_io.py) against the fake exchange's REST server, no pipeline:
rows offered as the writer offers them, candles served with the simulator's candle faults.
One run, several coins and faults:
- BTC 1m: three candles differ (volume, close, n): exactly those rows are revised, the
  venue's candle as the new row; the others match.
- ETH 1m: one candle is published late (retried, then matched), one never (unauditable after
  the bounded attempts).
- SOL 1m: no fault, every row matches.
- SOL 5s: one trade is missing from our rows of one minute: that minute's twelve 5s rows, and
  no other, are journaled as `venue_mismatch`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hlstream.common import inexact_io, revisions_io
from hlstream.common.config import Settings
from hlstream.common.csvrow import Row
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.common.rest_io import InfoClient
from hlstream.services.writer.auditor_io import Auditor
from hlstream.sim.exchange import FakeExchange
from hlstream.sim.market import TradePrint, truth_rows
from tests.support.wait import wait_for

M, S5 = 60_000, 5_000
MINUTES = 8
RETRY_MS, ATTEMPTS = 500, 5
LATE_MS = 1_500  # the late candle appears this long after the first ask: asked again, matched


@pytest.fixture(name="exchange")
def _exchange() -> Iterator[FakeExchange]:
    fake = FakeExchange(
        coins=["BTC", "ETH", "SOL"], spot=[], seed=7, history_hours=0.3, history_every_s=1.0
    )
    fake.pause_trades(True)
    with fake:
        yield fake


def bars(coin: str, interval: str, trades: list[TradePrint], first: int) -> list[Bar]:
    """Our rows of `trades` over MINUTES minutes from `first`, as the writer offers them."""
    step = M if interval == "1m" else S5
    rows = truth_rows(trades, step, first, first + MINUTES * M)
    counts = {start: 0 for start, *_ in rows}
    for trade in trades:
        if first <= trade["time"] < first + MINUTES * M:
            counts[trade["time"] - trade["time"] % step] += 1
    return [
        Bar(coin, interval, s, o, h, lo, c, v, counts[s], True, "ws") for s, o, h, lo, c, v in rows
    ]


def test_the_audit_finds_exactly_the_faulted_candles(exchange: FakeExchange, tmp_path: Path):
    first = exchange.trades("BTC")[-1]["time"] // M * M - (MINUTES + 2) * M
    minute = [first + k * M for k in range(MINUTES)]
    ours = {
        (coin, "1m"): bars(coin, "1m", list(exchange.trades(coin)), first)
        for coin in ("BTC", "ETH", "SOL")
    }
    btc = ours[("BTC", "1m")]
    assert all(bar.trades > 0 for bars_ in ours.values() for bar in bars_), "a minute traded"
    closing = btc[4].high if btc[4].close != btc[4].high else btc[4].low
    edits = {1: {"v": "123456.7"}, 4: {"c": closing}, 6: {"n": btc[6].trades + 1}}
    for k, edit in edits.items():
        exchange.set_candle_fault("BTC", minute[k], edit=edit)
    exchange.set_candle_fault("ETH", minute[5], missing=True)

    sol_trades = list(exchange.trades("SOL"))
    dropped = next(t for t in sol_trades if minute[3] + 20_000 <= t["time"] < minute[4])
    ours[("SOL", "5s")] = bars("SOL", "5s", [t for t in sol_trades if t is not dropped], first)

    settings = Settings(
        coins=("BTC", "ETH", "SOL"),
        intervals=("5s", "1m"),
        data_dir=tmp_path,
        run_dir=tmp_path,
        info_url=exchange.info_url,
        audit_settle_seconds=0.0,
    )
    paths = {key: tmp_path / f"{key[0]}_{key[1]}.csv" for key in ours}
    info = InfoClient(exchange.info_url)
    auditor = Auditor(
        settings,
        StopFlag(),
        EventLog("writer"),
        info,
        paths,
        now_ms=lambda: int(time.time() * 1000),
        retry_ms=RETRY_MS,
        max_attempts=ATTEMPTS,
        period_ms=0,
    )
    for offered in ours.values():
        auditor.offer(offered)
    late_s = (time.time() * 1000 + LATE_MS - (minute[2] + M)) / 1000
    exchange.set_candle_fault("ETH", minute[2], late_s=late_s)

    def all_audited() -> bool:
        auditor.tick()
        return auditor.totals().pending == 0

    try:
        wait_for(all_audited, 30, "every row audited or given up")
    finally:
        info.close()

    revisions = revisions_io.read(paths[("BTC", "1m")])
    assert {rev.old.start_ms for rev in revisions} == {minute[k] for k in edits}
    by_start = {bar.start_ms: bar for bar in btc}
    for rev in revisions:
        bar = by_start[rev.old.start_ms]
        assert rev.old == Row(bar.start_ms, bar.open, bar.high, bar.low, bar.close, bar.volume)
        assert rev.reason == "venue_mismatch"
    news = {rev.old.start_ms: rev.new for rev in revisions}
    olds = {rev.old.start_ms: rev.old for rev in revisions}
    assert news[minute[1]].volume == "123456.7" and news[minute[1]].close == btc[1].close
    assert news[minute[4]].close == closing and news[minute[4]].volume == btc[4].volume
    assert news[minute[6]] == olds[minute[6]], "only n differed: the venue's row is ours"

    tallies = {key: ledger.tally for key, ledger in auditor.ledgers.items()}
    assert (tallies[("BTC", "1m")].matched, tallies[("BTC", "1m")].mismatched) == (MINUTES - 3, 3)
    eth = tallies[("ETH", "1m")]
    assert (eth.matched, eth.mismatched, eth.unauditable) == (MINUTES - 1, 0, 1)
    assert (tallies[("SOL", "1m")].matched, tallies[("SOL", "1m")].mismatched) == (MINUTES, 0)
    asks = [
        body["req"]
        for body in exchange.rest_requests()
        if isinstance(body, dict) and body.get("type") == "candleSnapshot"
    ]
    eth_asks = [
        r for r in asks if r["coin"] == "ETH" and r["startTime"] <= minute[2] < r["endTime"]
    ]
    assert len(eth_asks) >= 2, "the late candle was asked for again"
    missing_asks = [
        r for r in asks if r["coin"] == "ETH" and r["startTime"] <= minute[5] < r["endTime"]
    ]
    assert len(missing_asks) == ATTEMPTS, "the missing candle: the bounded attempts, then no more"
    for key in [("ETH", "1m"), ("SOL", "1m")]:
        assert not revisions_io.read(paths[key])

    flagged = inexact_io.read_journal(paths[("SOL", "5s")])
    assert set(flagged) == {minute[3] + k * S5 for k in range(12)}
    assert set(flagged.values()) == {"venue_mismatch"}
    assert not inexact_io.read_journal(paths[("SOL", "1m")])
    five = tallies[("SOL", "5s")]
    assert (five.mismatched, five.matched, five.unauditable) == (12, (MINUTES - 1) * 12, 0)
