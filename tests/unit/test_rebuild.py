"""`hlstream rebuild`, pure part: bars from tape records, merged into an existing file."""

from __future__ import annotations

from hlstream.common.csvrow import HEADER_LINE, Row, format_row
from hlstream.common.messages import Gap
from hlstream.rebuild import (
    Change,
    FileLines,
    Window,
    compare,
    metered,
    parse_lines,
    tape_bars,
)
from hlstream.services.writer.core import row_of
from hlstream.verify import Finding
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


def _file(*rows: Row | bytes) -> FileLines:
    lines = [r if isinstance(r, bytes) else format_row(r).encode() for r in rows]
    return parse_lines([HEADER_LINE.encode(), *lines])


def _kinds(findings: list[Finding]) -> list[tuple[int, str]]:
    return [(f.line, f.kind) for f in findings]


TAPE = [_row(T0 + i * 15_000, str(10 + i)) for i in range(4)]  # what the tape rebuilds


def test_compare_replaces_wrong_rows_fills_missing_keeps_rows_the_tape_cannot_vouch_for():
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
    result = compare(_file(*existing), [row_of(b) for b in rebuilt.bars], rebuilt.inexact(), 15_000)
    kinds = {start - T0: change for start, change in result.changes.items()}
    assert kinds == {
        0: Change.SAME,
        15_000: Change.KEPT,
        30_000: Change.DIFFERS,
        45_000: Change.MISSING,
    }
    assert [r.start_ms - T0 for r in result.rows] == [-15_000, 0, 15_000, 30_000, 45_000]
    assert result.rows[2] == existing[2]
    assert result.rows[3] == Row(T0 + 30_000, "11.0", "11.0", "11.0", "11.0", "0.0")
    assert result.rows[4].close == "12.0"
    assert _kinds(result.findings) == [(5, "differs"), (6, "missing")]
    assert result.unsettled == [] and result.unparsed == []


def test_an_identical_duplicate_row_is_a_defect_and_the_rebuild_drops_it():
    result = compare(_file(TAPE[0], TAPE[1], TAPE[1], TAPE[2], TAPE[3]), TAPE, set(), 15_000)
    assert _kinds(result.findings) == [(4, "duplicate")]
    assert "appears twice (line 3)" in result.findings[0].message
    assert result.rows == TAPE
    assert result.count(Change.SAME) == 4


def test_a_hole_is_filled_from_the_tape():
    result = compare(_file(TAPE[0], TAPE[3]), TAPE, set(), 15_000)
    assert _kinds(result.findings) == [(3, "hole")]
    assert result.findings[0].message.startswith("2 missing windows between")
    assert result.rows == TAPE


def test_rows_out_of_order_are_put_in_window_order():
    result = compare(_file(TAPE[0], TAPE[2], TAPE[1], TAPE[3]), TAPE, set(), 15_000)
    assert _kinds(result.findings) == [(4, "order")]
    assert result.rows == TAPE


def test_a_torn_last_line_is_cut_and_its_window_rebuilt():
    torn = format_row(TAPE[3]).encode()[:-5]
    result = compare(_file(*TAPE[:3], torn), TAPE, set(), 15_000)
    assert _kinds(result.findings) == [(5, "missing"), (5, "torn")]
    assert result.rows == TAPE


def test_missing_windows_at_the_end_are_one_finding():
    result = compare(_file(TAPE[0]), TAPE, set(), 15_000)
    assert [(f.line, f.kind, f.message) for f in result.findings] == [
        (
            3,
            "missing",
            "3 windows from 2023-11-14 22:14:15 to 2023-11-14 22:14:45 are not in the file",
        )
    ]


def test_a_row_inside_the_range_that_is_no_window_is_extra():
    misaligned = _row(T0 + 20_000, "3")
    result = compare(_file(TAPE[0], TAPE[1], misaligned, TAPE[2], TAPE[3]), TAPE, set(), 15_000)
    assert _kinds(result.findings) == [(4, "extra")]
    assert result.rows == TAPE


def test_a_line_not_written_as_the_writer_writes_it_differs():
    crlf = format_row(TAPE[1]).encode().replace(b"\n", b"\r\n")
    result = compare(_file(TAPE[0], crlf, TAPE[2], TAPE[3]), TAPE, set(), 15_000)
    assert _kinds(result.findings) == [(3, "differs")]
    assert result.rows == TAPE


def test_rows_before_the_tape_are_kept_even_with_defects_it_cannot_settle():
    early = [_row(T0 - 45_000, "1"), _row(T0 - 30_000, "2"), _row(T0 - 30_000, "2.5")]
    result = compare(_file(*early, _row(T0 - 45_000, "1"), *TAPE), TAPE, set(), 15_000)
    assert result.rows == [early[0], early[1], early[2], *TAPE]  # nothing dropped
    assert _kinds(result.findings) == [(5, "duplicate")]  # identical copies: one is enough
    assert _kinds(result.unsettled) == [(4, "duplicate"), (6, "hole")]
    assert "the tape cannot tell which is right" in result.unsettled[0].message
    assert "the tape does not reach there" in result.unsettled[1].message


def test_a_window_the_tape_cannot_vouch_for_keeps_the_file_row():
    kept = _row(T0 + 15_000, "99")
    result = compare(_file(TAPE[0], kept, TAPE[2], TAPE[3]), TAPE, {T0 + 15_000}, 15_000)
    assert result.findings == [] and result.rows == [TAPE[0], kept, *TAPE[2:]]
    assert result.count(Change.KEPT) == 1


def test_a_line_that_is_no_row_is_reported_and_not_guessed():
    result = compare(_file(TAPE[0], b"garbage\n", *TAPE[1:]), TAPE, set(), 15_000)
    assert _kinds(result.unparsed) == [(3, "parse")]


def test_no_file_is_one_missing_finding():
    result = compare(FileLines(), TAPE, set(), 15_000)
    assert _kinds(result.findings) == [(2, "missing")] and result.rows == TAPE


def test_metered_reports_bytes_as_records_are_read_and_adds_up_to_the_segment():
    steps: list[int] = []
    records = [(make_trade(ts_ms=T0 + i), end) for i, end in enumerate((40, 70, 100))]
    reader = metered(iter(records), 120, steps.append)
    next(reader)
    assert steps == [40]  # before the rest of the segment is read
    assert list(reader) and steps == [40, 30, 30, 20]
    assert sum(steps) == 120
