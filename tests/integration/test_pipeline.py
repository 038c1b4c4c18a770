"""End to end: fake exchange -> ingest -> aggregator -> writer under supervisord.

Every CSV row must equal the truth computed from the fake's own trade log (carry-forward
rows included), with the exact header, no duplicates and no holes; the 1m files start
with REST-backfilled history equal to the fake's candles.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hlstream.common import inexact_io
from hlstream.common.clock import now_ms
from hlstream.common.timebucket import parse_window
from hlstream.sim.exchange import FakeExchange
from hlstream.sim.market import truth_rows
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline, assert_contiguous, read_rows
from tests.support.wait import wait_for

pytestmark = pytest.mark.long(75)

COINS = ("BTC", "ETH", "SOL")
QUIET = "SOL"
S5 = 5_000


exchange = exchange_fixture(
    coins=list(COINS), rate_per_coin=6.0, seed=11, history_hours=1.0, paused=True
)


def test_pipeline_writes_exact_bars_with_backfill_and_carry_forward(exchange, tmp_path):
    pipeline = Pipeline(
        exchange, tmp_path, coins=",".join(COINS), intervals="5s,1m", backfill_hours="1"
    ).start()
    try:
        pipeline.wait_ready()
        exchange.pause_trades(False)
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "5s"))) >= 2, 20, "first 5s rows")
        quiet_from = now_ms()
        exchange.set_quiet(QUIET, True)
        wait_for(lambda: len(carried_since(pipeline, quiet_from)) >= 2, 30, "two carry rows")
        exchange.set_quiet(QUIET, False)
        traded_again = now_ms() + S5
        wait_for(lambda: all_rows_reach(pipeline, traded_again), 30, "rows after the quiet")
        exchange.pause_trades(True)
        paused_at = now_ms()
        wait_for(lambda: all_rows_reach(pipeline, paused_at), 30, "the last windows on disk")
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
            wrong = {row[0] for row, want in zip(rows, truth, strict=True) if row != tuple(want)}
            # A feed the machine starved long enough to be called stale is a real gap: its rows
            # are journaled, never silent. Without one (the usual run) every row is exact.
            journal = set(inexact_io.read_journal(pipeline.csv(coin, interval)))
            assert wrong <= journal, f"{coin} {interval}: rows differ from truth, not journaled"
            assert len(wrong) <= 2, f"{coin} {interval}: {len(wrong)} rows differ from truth"
        assert len(read_rows(pipeline.csv(coin, "1m"))) >= 55, "1h of 1m history backfilled"
        assert len(read_rows(pipeline.csv(coin, "5s"))) >= 5

    quiet_rows = read_rows(pipeline.csv(QUIET, "5s"))
    carried = [r for r in quiet_rows if r[5] == "0.0"]
    assert len(carried) >= 2, "quiet coin produced carry-forward rows"
    for row in carried:
        assert row[1] == row[2] == row[3] == row[4]

    check_rebuild_from_tape(pipeline, exchange)


def carried_since(pipeline: Pipeline, from_ms: int) -> list[tuple[int, str, str, str, str, str]]:
    """The quiet coin's zero-volume 5s rows of windows that start at or after `from_ms`."""
    rows = read_rows(pipeline.csv(QUIET, "5s"))
    return [row for row in rows if row[0] >= from_ms and row[5] == "0.0"]


def all_rows_reach(pipeline: Pipeline, at_ms: int) -> bool:
    """Every coin's 5s file has the row of the window holding `at_ms`."""
    window = at_ms - at_ms % S5
    return all(
        any(row[0] >= window for row in read_rows(pipeline.csv(coin, "5s"))) for coin in COINS
    )


def rebuild(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return pipeline.cli("rebuild", *args)


def check_rebuild_from_tape(pipeline: Pipeline, exchange: FakeExchange) -> None:
    """The tape re-derives the live files byte for byte, repairs a damaged one, and makes
    bars of an interval that was never configured."""
    for interval in ("5s", "1m"):
        result = rebuild(pipeline, "--interval", interval, "--check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert " 0 differ, 0 missing" in result.stdout
    btc = pipeline.csv("BTC", "5s")
    live = btc.read_bytes()
    lines = live.decode().splitlines(keepends=True)
    damaged_at = len(lines) // 2
    wrong = lines[damaged_at].rsplit(",", 1)[0] + ",999.0\n"
    btc.write_text("".join(lines[:damaged_at] + [wrong] + lines[damaged_at + 1 : -2]))
    last_start = parse_window(lines[-1].split(",")[0])
    to = str(last_start + 5_000)  # through the live file's last row (carry rows included)
    result = rebuild(pipeline, "--interval", "5s", "--coins", "BTC", "--to", to, "--check")
    assert result.returncode == 1, result.stdout + result.stderr
    listed = [line for line in result.stdout.splitlines() if f"{btc.name}:" in line]
    stamp = lines[damaged_at].split(",")[0]
    assert f"{btc.name}:{damaged_at + 1}: differs: {stamp}: file " in listed[0], listed
    assert "999.0" in listed[0]
    assert len(listed) == 2, listed  # the wrong row, and the two cut from the end
    assert ": missing: 2 windows from " in listed[1], listed
    result = rebuild(pipeline, "--interval", "5s", "--coins", "BTC", "--to", to)
    assert result.returncode == 0, result.stdout + result.stderr
    assert btc.read_bytes() == live, "rebuilt byte for byte"
    mtime = btc.stat().st_mtime_ns
    result = rebuild(pipeline, "--interval", "5s", "--coins", "BTC", "--to", to)
    assert result.returncode == 0 and "unchanged" in result.stdout
    assert btc.stat().st_mtime_ns == mtime, "a second run changes nothing"

    result = rebuild(pipeline, "--interval", "15s")
    assert result.returncode == 0, result.stdout + result.stderr
    for coin in COINS:
        path = pipeline.data_dir / Path(pipeline.csv(coin, "5s").name.replace("_5s_", "_15s_"))
        rows = read_rows(path)
        assert len(rows) >= 10
        assert_contiguous(rows, 15_000, f"{coin}_15s")
        truth = truth_rows(exchange.trades(coin), 15_000, rows[0][0], rows[-1][0] + 15_000)
        # The tape starts mid-window (with the venue's replay): that first window cannot be
        # vouched for, and it is recorded as not exact; every other row equals the truth.
        inexact = inexact_io.read_journal(path)
        assert set(inexact) <= {rows[0][0]}
        exact = [
            (row, want) for row, want in zip(rows, truth, strict=True) if row[0] not in inexact
        ]
        assert len(exact) >= 9 and all(row == want for row, want in exact), coin


def test_illiquid_coin_gets_exact_rows_from_the_first_window_after_start(tmp_path):
    """A coin trading about once per 20 s: its last close comes from the venue's subscribe
    replay (via the tape), so its 5s and 1m files get carry-forward rows from the first window
    after start instead of waiting for the first live trade."""
    with FakeExchange(coins=["BTC", "DOGE"], rate_per_coin=5.0, seed=5, history_hours=0.5) as fake:
        fake.set_rate(0.05, "DOGE")
        pipeline = Pipeline(
            fake, tmp_path, coins="BTC,DOGE", intervals="5s,1m", backfill_hours="0.25"
        ).start()
        started_ms = now_ms()
        try:
            pipeline.wait_ready()
            first_window = started_ms - started_ms % 5_000 + 5_000
            wait_for(
                lambda: (
                    len(read_rows(pipeline.csv("DOGE", "5s"))) >= 4
                    and read_rows(pipeline.csv("DOGE", "5s"))[0][0] <= first_window
                ),
                30,
                "DOGE 5s rows from the first window after start",
            )
        finally:
            code, output = pipeline.stop()
        assert code == 0, output[-3000:]
        trades = fake.trades("DOGE")
        for interval, interval_ms in (("5s", 5_000), ("1m", 60_000)):
            rows = read_rows(pipeline.csv("DOGE", interval))
            assert_contiguous(rows, interval_ms, f"DOGE_{interval}")
            truth = truth_rows(trades, interval_ms, rows[0][0], rows[-1][0] + interval_ms)
            assert truth == rows, f"DOGE {interval} differs from truth"
        minutes = [r[0] for r in read_rows(pipeline.csv("DOGE", "1m"))]
        stopped_ms = now_ms()
        assert minutes[-1] >= stopped_ms - stopped_ms % 60_000 - 120_000, "1m rows kept coming"
        assert read_rows(pipeline.csv("DOGE", "5s"))[0][0] <= first_window
