"""`hlstream rebuild`, pure part: bars from tape records, merged into an existing file."""

from __future__ import annotations

from hlstream.common.csvrow import Row
from hlstream.common.messages import Gap
from hlstream.rebuild import Change, Window, holes, merge_rows, tape_bars
from tests.support.trades import make_trade

T0 = 1_700_000_040_000  # aligned to 15 s and 1 m
W15 = Window("15s", 15_000, T0, T0 + 60_000)


def test_tape_bars_of_an_unconfigured_interval_with_carry_forward():
    records = [
        make_trade(price="10", size="1", ts_ms=T0 + 1_000),
        make_trade(price="12", size="2", ts_ms=T0 + 2_000),
        make_trade(price="11", size="0.5", ts_ms=T0 + 31_000),
    ]
    out = tape_bars("BTC", W15, records, covered_from=T0 - 5_000, seed_close=None)
    rows = [(b.start_ms - T0, b.open, b.high, b.low, b.close, b.volume) for b in out.bars]
    assert rows == [
        (0, "10.0", "12.0", "10.0", "12.0", "3.0"),
        (15_000, "12.0", "12.0", "12.0", "12.0", "0.0"),
        (30_000, "11.0", "11.0", "11.0", "11.0", "0.5"),
        (45_000, "11.0", "11.0", "11.0", "11.0", "0.0"),
    ]
    assert out.inexact() == set() and out.late == 0


def test_windows_before_coverage_or_under_a_gap_are_inexact():
    records = [
        make_trade(price="10", ts_ms=T0 + 1_000),
        Gap("BTC", T0 + 33_000, T0 + 34_000, "replay_short"),
        make_trade(price="11", ts_ms=T0 + 50_000),
    ]
    out = tape_bars("BTC", W15, records, covered_from=T0 + 500, seed_close="9")
    assert out.inexact() == {T0, T0 + 30_000}
    assert out.bars[0].open == "10.0"  # the seed is only for windows without trades


def test_seed_close_carries_the_first_empty_windows():
    out = tape_bars("BTC", W15, [], covered_from=T0 - 1, seed_close="9.5")
    assert [(b.start_ms, b.close, b.volume) for b in out.bars] == [
        (T0 + i * 15_000, "9.5", "0.0") for i in range(4)
    ]


def _row(start: int, close: str, volume: str = "1.0") -> Row:
    return Row(start, close, close, close, close, volume)


def test_merge_replaces_wrong_rows_fills_missing_keeps_rows_the_tape_cannot_vouch_for():
    records = [
        make_trade(price="10", size="1", ts_ms=T0 + 1_000),
        Gap("BTC", T0 + 16_000, T0 + 17_000, "replay_short"),
        make_trade(price="11", size="1", ts_ms=T0 + 20_000),
        make_trade(price="12", size="1", ts_ms=T0 + 50_000),
    ]
    rebuilt = tape_bars("BTC", W15, records, covered_from=T0 - 1, seed_close=None)
    existing = [
        _row(T0 - 15_000, "9"),  # outside the range: untouched
        _row(T0, "10.0"),  # same
        _row(T0 + 15_000, "11.5", "7.0"),  # under the gap (REST-repaired, say): kept
        _row(T0 + 30_000, "10.0", "0.5"),  # wrong
    ]
    merge = merge_rows(existing, rebuilt, W15)
    kinds = {c.start_ms - T0: c.change for c in merge.changes}
    assert kinds == {
        0: Change.SAME,
        15_000: Change.KEPT,
        30_000: Change.DIFFERS,
        45_000: Change.MISSING,
    }
    assert [r.start_ms - T0 for r in merge.rows] == [-15_000, 0, 15_000, 30_000, 45_000]
    assert merge.rows[2] == existing[2]
    assert merge.rows[3] == Row(T0 + 30_000, "11.0", "11.0", "11.0", "11.0", "0.0")
    assert merge.rows[4].close == "12.0"
    assert [c.start_ms - T0 for c in merge.differing()] == [30_000, 45_000]
    assert list(holes(merge.rows, 15_000)) == []
    assert list(holes([merge.rows[0], merge.rows[2]], 15_000)) == [(T0 - 15_000, T0 + 15_000)]
