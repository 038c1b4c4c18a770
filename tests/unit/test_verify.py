"""hlstream/verify.py: every kind of CSV corruption is one finding of its own kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlstream.common.csvrow import Row
from hlstream.common.revisions import Revision
from hlstream.rebuild import parse_lines
from hlstream.venue_io import read_rows
from hlstream.verify import (
    FileRow,
    Finding,
    check_lines,
    interval_from_filename,
    plural,
    scan_lines,
)
from hlstream.verify_io import snapshot_lines, verify_file

HEADER = b"Datetime,Open,High,Low,Close,Volume\n"
GOOD = [
    b"2024-01-01 00:00:00,100.0,101.5,99.5,101.0,3.25\n",
    b"2024-01-01 00:01:00,101.0,102.0,100.0,100.5,1.0\n",
    b"2024-01-01 00:02:00,100.5,100.5,100.5,100.5,0.0\n",
    b"2024-01-01 00:03:00,100.5,103.0,100.5,102.0,0.5\n",
]
MINUTE_MS = 60_000


def kinds(lines: list[bytes], interval_ms: int | None = MINUTE_MS) -> list[tuple[int, str]]:
    findings, _rows = check_lines(lines, interval_ms)
    return [(finding.line, finding.kind) for finding in findings]


def test_clean_file_has_no_findings() -> None:
    findings, rows = check_lines([HEADER, *GOOD], MINUTE_MS)
    assert findings == [] and rows == 4


def test_header_only_file_is_clean() -> None:
    assert kinds([HEADER]) == []


def test_empty_file_is_a_header_defect() -> None:
    assert kinds([]) == [(0, "header")]


def test_wrong_header_is_reported_and_rows_are_not_checked() -> None:
    assert kinds([b"time,o,h,l,c,v\n", b"garbage\n"]) == [(1, "header")]


def test_torn_last_line_is_reported_not_parsed() -> None:
    assert kinds([HEADER, GOOD[0], b"2024-01-01 00:01:00,101.0,10"]) == [(3, "torn")]


def test_unparseable_row_is_reported() -> None:
    assert kinds([HEADER, GOOD[0], b"2024-01-01 00:01:00,abc,1,1,1,1\n"]) == [(3, "parse")]


def test_row_with_missing_field_is_reported() -> None:
    assert kinds([HEADER, b"2024-01-01 00:00:00,1,1,1,1\n"]) == [(2, "parse")]


def test_duplicate_row_is_reported() -> None:
    assert kinds([HEADER, GOOD[0], GOOD[1], GOOD[1], GOOD[2]]) == [(4, "duplicate")]


def test_out_of_order_row_is_reported() -> None:
    assert kinds([HEADER, GOOD[0], GOOD[1], GOOD[0], GOOD[2], GOOD[3]]) == [(4, "order")]


def test_hole_reports_how_many_windows_are_missing() -> None:
    findings, _ = check_lines([HEADER, GOOD[0], GOOD[3]], MINUTE_MS)
    assert [(f.line, f.kind) for f in findings] == [(3, "hole")]
    assert "2 missing windows between" in findings[0].message


def test_one_missing_window_is_said_in_the_singular() -> None:
    findings, _ = check_lines([HEADER, GOOD[0], GOOD[2]], MINUTE_MS)
    assert findings[0].message.startswith("1 missing window between")


def test_an_inexact_row_is_reported_at_its_line() -> None:
    start = 1_704_067_260_000  # 2024-01-01 00:01:00, the second row
    findings, _ = check_lines([HEADER, *GOOD], MINUTE_MS, {start: "partial"}, "x.csv.inexact")
    assert [(f.line, f.kind) for f in findings] == [(3, "inexact")]
    assert findings[0].message == "row 2024-01-01 00:01:00 is not exact: partial (x.csv.inexact)"


def test_an_inexact_entry_without_its_row_is_reported_for_the_file() -> None:
    findings, _ = check_lines([HEADER, GOOD[0]], MINUTE_MS, {1_704_067_260_000: "partial"})
    assert [(f.line, f.kind) for f in findings] == [(0, "inexact")]
    assert findings[0].message.endswith("the file has no such row")


def test_no_hole_check_without_an_interval() -> None:
    assert kinds([HEADER, GOOD[0], GOOD[3]], interval_ms=None) == []


def test_misaligned_window_is_reported() -> None:
    line = b"2024-01-01 00:04:30,102.0,102.0,102.0,102.0,1.0\n"
    assert kinds([HEADER, *GOOD, line]) == [(6, "align")]


@pytest.mark.parametrize(
    "line",
    [
        b"2024-01-01 00:01:00,103.0,102.0,100.0,100.5,1.0\n",  # open above high
        b"2024-01-01 00:01:00,101.0,102.0,100.0,99.0,1.0\n",  # close below low
    ],
)
def test_open_or_close_outside_low_high_is_reported(line: bytes) -> None:
    assert kinds([HEADER, GOOD[0], line]) == [(3, "range")]


def test_negative_volume_is_reported() -> None:
    assert kinds([HEADER, GOOD[0], b"2024-01-01 00:01:00,101.0,102.0,100.0,100.5,-1\n"]) == [
        (3, "volume")
    ]


def test_carry_forward_row_must_repeat_previous_close() -> None:
    carried = b"2024-01-01 00:01:00,100.0,100.0,100.0,100.0,0.0\n"  # previous close is 101.0
    assert kinds([HEADER, GOOD[0], carried]) == [(3, "carry")]


def test_carry_forward_row_must_be_flat() -> None:
    carried = b"2024-01-01 00:01:00,101.0,101.5,101.0,101.0,0.0\n"
    assert kinds([HEADER, GOOD[0], carried]) == [(3, "carry")]


def test_non_canonical_datetime_is_reported() -> None:
    assert kinds([HEADER, b"2024-1-1 00:00:00,100.0,101.5,99.5,101.0,3.25\n"]) == [(2, "format")]


def test_exponent_decimal_is_reported() -> None:
    assert kinds([HEADER, b"2024-01-01 00:00:00,1E+2,1E+2,1E+2,1E+2,1.0\n"]) == [(2, "format")]


def test_crlf_line_is_reported() -> None:
    assert kinds([HEADER, GOOD[0].replace(b"\n", b"\r\n")]) == [(2, "format")]


def test_every_defect_is_reported_not_just_the_first() -> None:
    lines = [HEADER, GOOD[0], GOOD[0], GOOD[3], b"x,y\n", b"2024-01-01 00:04:00,1"]
    assert kinds(lines) == [(3, "duplicate"), (4, "hole"), (5, "parse"), (6, "torn")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("btc_30m_data.csv", ("30m", 1_800_000)),
        ("purr%2fusdc_5s_data.csv", ("5s", 5_000)),
        ("btc_7x_data.csv", None),
        ("notes.csv", None),
        ("_1m_data.csv", None),
    ],
)
def test_interval_from_filename(name: str, expected: tuple[str, int] | None) -> None:
    assert interval_from_filename(name) == expected


@pytest.mark.parametrize(("count", "text"), [(0, "0 defects"), (1, "1 defect"), (2, "2 defects")])
def test_plural(count: int, text: str) -> None:
    assert plural(count, "defect") == text


def test_a_pending_revision_is_a_revised_finding_at_its_row() -> None:
    start = 1_704_067_260_000  # 00:01
    old = Row(start, "101.0", "102.0", "100.0", "100.5", "1.0")
    new = Row(start, "101.0", "102.0", "100.0", "100.5", "1.25")
    pending = Revision(old, new, "gap_after_close", start + 120_000)
    applied = Revision(Row(0, "1", "1", "1", "1", "1"), Row(0, "1", "1", "1", "1", "1"), "x", 0)
    findings, _ = check_lines([HEADER, *GOOD], MINUTE_MS, revisions=[pending, applied])
    assert [(f.line, f.kind) for f in findings] == [(3, "revised")]
    assert findings[0].message == (
        "2024-01-01 00:01:00 gap_after_close: ours 101.0 102.0 100.0 100.5 1.0 "
        "new 101.0 102.0 100.0 100.5 1.25 (run hlstream repair)"
    )
    done = Revision(new, new, "venue_mismatch", start)  # the row already holds the new values
    assert check_lines([HEADER, *GOOD], MINUTE_MS, revisions=[done])[0] == []


def test_a_one_byte_torn_line_is_said_in_the_singular() -> None:
    findings, _ = check_lines([HEADER, GOOD[0], b"2"], MINUTE_MS)
    assert findings == [
        Finding(3, "torn", "last line has no newline (1 byte): an interrupted write")
    ]


def test_a_first_line_that_is_not_utf8_is_a_foreign_header() -> None:
    assert kinds([b"\xffDatetime,Open,High,Low,Close,Volume\n", b"garbage\n"]) == [(1, "header")]


def test_rebuild_and_the_venue_audit_read_the_rows_verify_reads(tmp_path: Path) -> None:
    crlf = GOOD[1].replace(b"\n", b"\r\n")  # a row with a format defect is still a row
    lines = [HEADER, GOOD[0], crlf, b"garbage\n", GOOD[2], b"2024-01-01 00:03"]
    path = tmp_path / "btc_1m_data.csv"
    path.write_bytes(b"".join(lines))
    rows = [(item.line, item.row) for item in scan_lines(lines) if isinstance(item, FileRow)]
    assert [line for line, _ in rows] == [2, 3, 5] and check_lines(lines, MINUTE_MS)[1] == 3
    assert read_rows(path) == rows
    file = parse_lines(lines)
    assert [(item.line, item.row) for item in file.rows] == rows
    assert [item.canonical for item in file.rows] == [True, False, True]


@pytest.mark.parametrize("first", [b"time,o,h,l,c,v\n", b"Datetime,Op", GOOD[0]])
def test_no_reader_takes_rows_from_a_file_without_the_header(tmp_path: Path, first: bytes) -> None:
    path = tmp_path / "btc_1m_data.csv"
    path.write_bytes(first + b"".join(GOOD))
    assert read_rows(path) == []
    assert parse_lines([first, *GOOD]).foreign


def test_a_file_that_cannot_be_opened_is_one_io_finding(tmp_path: Path) -> None:
    missing = verify_file(tmp_path / "btc_1m_data.csv")
    assert missing == ([Finding(0, "io", "cannot open: No such file or directory")], 0)
    (tmp_path / "eth_1m_data.csv").mkdir()
    assert verify_file(tmp_path / "eth_1m_data.csv")[0][0].kind == "io"


def test_a_file_is_read_in_whole_lines_up_to_its_size(tmp_path: Path) -> None:
    path = tmp_path / "btc_1m_data.csv"
    path.write_bytes(HEADER + GOOD[0] * 40_000 + GOOD[1][:5])
    lines = list(snapshot_lines(path))
    assert (
        len(lines) == 40_002 and lines[-1] == GOOD[1][:5] and b"".join(lines) == path.read_bytes()
    )
