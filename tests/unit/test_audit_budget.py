"""The live audit's REST weight (auditor_io.py) on an injected clock: with 7 coins and with
`coins = "all"`-sized 200 coins of 1m rows, default settings, it spends at most its share
(`audit_weight_share` of the venue's 1,200 a minute) over any minute and per hour, matches the
documented weight per hour (tests/support/audit_weight.py), and keeps up: every row is audited."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hlstream.common.config import Settings
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.services.writer.audit import audit_period_s
from hlstream.services.writer.auditor_io import Auditor
from hlstream.services.writer.core import candle_weight
from tests.support.audit_weight import weight_per_hour

M = 60_000
T0 = 1_764_500_040_000 - 1_764_500_040_000 % (60 * M)
HOURS = 3
TICK_MS = 2_000


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def now_ms(self) -> int:
        return self.ms

    def now_s(self) -> float:
        return self.ms / 1000


class Venue:
    """candleSnapshot answered from every minute (each row matches), each ask logged."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.asks: list[tuple[int, float]] = []  # (when, weight)

    def post(self, body: Mapping[str, object]) -> Any:
        req = body["req"]
        assert isinstance(req, dict)
        start, end = req["startTime"], req["endTime"]
        starts = range(start - start % M, min(end, self.clock.ms - M), M)
        self.asks.append((self.clock.ms, candle_weight((end - start) // M)))
        return [
            {"t": s, "T": s + M - 1, "s": req["coin"], "i": "1m", "o": "1", "c": "1"}
            | {"h": "1", "l": "1", "v": "1", "n": 1}
            for s in starts
        ]


def run(coins: int, tmp_path: Path) -> tuple[Auditor, Venue, Settings, int]:
    """HOURS of 1m rows of `coins` coins offered as the writer appends them, then the audit
    left to finish; returns the auditor, the venue and how many rows were offered."""
    names = tuple(f"C{k}" for k in range(coins))
    settings = Settings(coins=names, intervals=("1m",), data_dir=tmp_path, run_dir=tmp_path)
    clock = Clock()
    venue = Venue(clock)
    paths = {(coin, "1m"): tmp_path / f"{coin}.csv" for coin in names}
    auditor = Auditor(
        settings,
        StopFlag(),
        EventLog("writer"),
        venue,
        paths,
        now_ms=clock.now_ms,
        clock_s=clock.now_s,
    )
    offered = 0
    end = T0 + HOURS * 60 * M
    while clock.ms < end + 30 * M and (clock.ms < end or auditor.totals().pending):
        if clock.ms % M == 0 and clock.ms < end:
            start = clock.ms - M
            auditor.offer(
                [Bar(c, "1m", start, "1", "1", "1", "1", "1", 1, True, "ws") for c in names]
            )
            offered += coins
        auditor.tick()
        clock.ms += TICK_MS
    return auditor, venue, settings, offered


@pytest.mark.parametrize("coins", [7, 200])
def test_the_audit_stays_in_its_share_and_audits_every_row(coins: int, tmp_path: Path):
    auditor, venue, settings, offered = run(coins, tmp_path)
    share = settings.audit_weight_share * 1200
    tally = auditor.totals()
    assert auditor.totals().pending == 0 and tally.audited == tally.matched == offered, "kept up"
    for when, _ in venue.asks:  # any minute: the bucket's capacity plus a minute's refill
        assert sum(w for t, w in venue.asks if when <= t < when + M) <= 2 * share
    last_hour = sum(
        w for t, w in venue.asks if T0 + (HOURS - 1) * 60 * M <= t < T0 + HOURS * 60 * M
    )
    assert last_hour <= share * 60
    settle = settings.audit_settle_seconds
    expected = weight_per_hour(coins, settings.audit_weight_share, settle, M)
    assert last_hour == pytest.approx(expected, rel=0.05), (last_hour, expected)
    period = audit_period_s(coins, settings.audit_weight_share, settle, M)
    print(f"{coins} coins: a request per coin every {period:.0f} s, {last_hour:.0f} weight/hour")
