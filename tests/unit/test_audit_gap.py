"""A 1m+ row a later-known feed gap covered (`gap_after_close`) is repaired from the venue's
candle: the real Auditor (services/writer/auditor_io.py) on an injected clock against a fake
venue. A differing candle yields a revision with reason gap_after_close and the venue's candle
as the new row; a matching one yields none and confirms the row (its journal entry goes)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hlstream.common import inexact_io, revisions_io
from hlstream.common.config import Settings
from hlstream.common.csvrow import Row
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar, Inexact
from hlstream.common.revisions import GAP_AFTER_CLOSE, VENUE_MISMATCH
from hlstream.services.writer.auditor_io import Auditor
from hlstream.services.writer.ledger_state import decode_ledgers, encode_ledgers, restore
from hlstream.services.writer.store import Store

M = 60_000
T0 = 1_764_500_040_000 - 1_764_500_040_000 % M
OURS = ("100", "101", "99", "100", "2")  # the row we wrote, from 4 trades
GAP = inexact_io.Reason.GAP_AFTER_CLOSE


class Venue:
    """candleSnapshot of 1m candles served from `candles` (start -> o, h, l, c, v, n)."""

    def __init__(self, candles: Mapping[int, tuple[str, str, str, str, str, int]]) -> None:
        self.candles = candles
        self.asks = 0

    def post(self, body: Mapping[str, object]) -> Any:
        req = body["req"]
        assert isinstance(req, dict)
        self.asks += 1
        return [
            {"t": s, "T": s + M - 1, "s": req["coin"], "i": "1m", "o": o, "h": h, "l": lo}
            | {"c": c, "v": v, "n": n}
            for s, (o, h, lo, c, v, n) in sorted(self.candles.items())
            if req["startTime"] <= s < req["endTime"]
        ]


class Run:
    """A writer's audit of BTC 1m: offer rows, hand in a gap notice, let the clock run."""

    def __init__(self, tmp_path: Path, venue: Venue) -> None:
        self.ms = T0 + M  # the row of T0 was just appended
        settings = Settings(coins=("BTC",), intervals=("1m",), data_dir=tmp_path, run_dir=tmp_path)
        self.settings = settings
        self.path = tmp_path / "btc_1m_data.csv"
        self.auditor = Auditor(
            settings,
            StopFlag(),
            EventLog("writer"),
            venue,
            {("BTC", "1m"): self.path},
            now_ms=lambda: self.ms,
            clock_s=lambda: self.ms / 1000,
        )
        self.settle_ms = int(settings.audit_settle_seconds * 1000)

    def offer(self, start: int) -> None:
        self.auditor.offer([Bar("BTC", "1m", start, *OURS, 4, True, "ws")])

    def notice(self, starts: list[int]) -> None:
        """As the store does: journal the rows, then hand them to the audit."""
        inexact_io.record(self.path, [(start, GAP) for start in starts])
        self.auditor.gap_after_close("BTC", "1m", starts)

    def settle(self) -> None:
        """Tick until nothing is pending (within an hour of audit time)."""
        for _ in range(1800):
            self.auditor.tick()
            if not self.auditor.totals().pending:
                return
            self.ms += 2_000
        raise AssertionError("the audit never settled")


def test_a_gap_row_whose_venue_candle_differs_is_revised_with_reason_gap_after_close(
    tmp_path: Path,
) -> None:
    venue = Venue({T0: ("100", "101", "98.5", "100.5", "2.75", 6), T0 + M: (*OURS, 4)})
    run = Run(tmp_path, venue)
    run.offer(T0)
    run.offer(T0 + M)
    run.notice([T0, T0 + M])
    run.settle()
    (revision,) = revisions_io.read(run.path)
    assert revision.reason == GAP_AFTER_CLOSE
    assert revision.old == Row(T0, *OURS)
    assert revision.new == Row(T0, "100.0", "101.0", "98.5", "100.5", "2.75")  # venue decimals
    assert inexact_io.read_journal(run.path) == {T0: GAP}  # until repair applies it
    assert run.auditor.totals().mismatched == 1 and run.auditor.totals().matched == 1


def test_a_gap_row_that_matches_gets_no_revision_and_is_confirmed(tmp_path: Path) -> None:
    run = Run(tmp_path, Venue({T0: (*OURS, 4)}))
    run.offer(T0)
    run.notice([T0])
    run.settle()
    assert revisions_io.read(run.path) == []
    assert inexact_io.read_journal(run.path) == {}
    assert run.auditor.totals().matched == 1


def test_without_a_notice_the_revision_says_venue_mismatch(tmp_path: Path) -> None:
    run = Run(tmp_path, Venue({T0: ("100", "101", "98.5", "100.5", "2.75", 6)}))
    run.offer(T0)
    run.settle()
    assert [rev.reason for rev in revisions_io.read(run.path)] == [VENUE_MISMATCH]


def test_a_row_that_matched_before_the_notice_is_confirmed_without_asking_again(
    tmp_path: Path,
) -> None:
    venue = Venue({T0: (*OURS, 4)})
    run = Run(tmp_path, venue)
    run.offer(T0)
    run.settle()
    asks = venue.asks
    run.notice([T0, T0 - M])  # T0 - M: a row the audit never had (written from REST)
    assert inexact_io.read_journal(run.path) == {T0 - M: GAP}
    assert venue.asks == asks and run.auditor.totals().audited == 1


def test_a_pending_gap_row_waits_its_settle_delay(tmp_path: Path) -> None:
    venue = Venue({T0: ("100", "101", "98.5", "100.5", "2.75", 6)})
    run = Run(tmp_path, venue)
    run.offer(T0)
    run.notice([T0])
    while run.ms < T0 + M + run.settle_ms:
        run.auditor.tick()
        run.ms += 2_000
    assert venue.asks == 0 and run.auditor.totals().pending == 1
    run.settle()
    assert [rev.reason for rev in revisions_io.read(run.path)] == [GAP_AFTER_CLOSE]


def test_the_store_hands_a_notice_to_the_audit_after_journaling_it(tmp_path: Path) -> None:
    venue = Venue({T0: ("100", "101", "98.5", "100.5", "2.75", 6)})
    run = Run(tmp_path, venue)
    store = Store(run.settings, StopFlag(), EventLog("writer"), info=venue, now_ms=lambda: run.ms)
    store.open_files()
    store.on_written = run.auditor.offer
    store.on_gap = run.auditor.gap_after_close
    assert store.handle_bar(Bar("BTC", "1m", T0, *OURS, 4, True, "ws"))
    assert store.handle_notice(Inexact("BTC", "1m", T0, T0, "gap_after_close"))
    assert inexact_io.read_journal(run.path) == {T0: GAP}
    run.settle()
    assert [rev.reason for rev in revisions_io.read(run.path)] == [GAP_AFTER_CLOSE]


def test_the_reason_of_a_pending_gap_row_survives_a_restart(tmp_path: Path) -> None:
    run = Run(tmp_path, Venue({}))
    run.offer(T0)
    run.notice([T0])
    ledgers = run.auditor.ledgers
    fresh = Run(tmp_path / "other", Venue({})).auditor.ledgers
    restore(fresh, decode_ledgers(encode_ledgers(ledgers, "/d"), "/d"))
    assert fresh[("BTC", "1m")].units[T0].reason == GAP_AFTER_CLOSE
