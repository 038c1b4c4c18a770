"""Rows that are not exact are journaled beside their file and reported by verify/status."""

from __future__ import annotations

import io

from hlstream.common import inexact_io, revisions_io
from hlstream.common.config import Settings
from hlstream.common.csvrow import Row
from hlstream.common.inexact_io import Reason
from hlstream.common.revisions import Revision
from hlstream.health import build_report
from hlstream.health_text import format_report
from hlstream.verify_io import run_verify

T0 = 1_700_000_040_000
ROWS = "Datetime,Open,High,Low,Close,Volume\n2023-11-14 22:14:00,1,1,1,1,0.5\n"


def test_journal_appends_reads_skips_a_torn_line_and_rewrites(tmp_path):
    csv = tmp_path / "BTC_5s_data.csv"
    assert inexact_io.read_journal(csv) == {}
    inexact_io.record(csv, [(T0, Reason.PARTIAL)])
    inexact_io.record(csv, [(T0 + 5_000, Reason.GAP_AFTER_CLOSE)])
    journal = inexact_io.journal_path(csv)
    assert journal.name == "BTC_5s_data.csv.inexact"
    assert journal.read_text().splitlines() == [
        "Datetime,Reason",
        "2023-11-14 22:14:00,partial",
        "2023-11-14 22:14:05,gap_after_close",
    ]
    with journal.open("a") as handle:
        handle.write("2023-11-14 22:14:1")  # crash mid-append
    assert inexact_io.read_journal(csv) == {T0: "partial", T0 + 5_000: "gap_after_close"}
    inexact_io.rewrite(csv, {T0: "partial"})
    assert len(inexact_io.read_journal(csv)) == 1
    inexact_io.rewrite(csv, {})
    assert not journal.exists()


def test_verify_lists_every_inexact_row_and_fails(tmp_path):
    csv = tmp_path / "BTC_1m_data.csv"
    csv.write_text(ROWS)
    out, err = io.StringIO(), io.StringIO()
    assert run_verify([csv], out=out, err=err) == 0
    inexact_io.record(csv, [(T0, Reason.GAP_AFTER_CLOSE)])
    out, err = io.StringIO(), io.StringIO()
    assert run_verify([csv], out=out, err=err) == 1
    assert f"{csv}:2: inexact: row 2023-11-14 22:14:00 is not exact: gap_after_close" in (
        out.getvalue()
    )
    assert "1 file, " in err.getvalue() and ": 1 defect\n" in err.getvalue()


def test_status_counts_inexact_rows_without_calling_the_pipeline_unhealthy():
    report = build_report(Settings(), False, {}, {}, T0, {"BTC_5s_data.csv": 3})
    assert report.inexact_rows == 3
    assert "3 rows are not exact" in format_report(report)


def test_discard_removes_only_entries_of_its_reason(tmp_path):
    csv = tmp_path / "BTC_1m_data.csv"
    inexact_io.record(csv, [(T0, Reason.PARTIAL), (T0 + 60_000, Reason.GAP_AFTER_CLOSE)])
    assert not inexact_io.discard(csv, [T0], Reason.GAP_AFTER_CLOSE)
    assert inexact_io.discard(csv, [T0, T0 + 60_000], Reason.GAP_AFTER_CLOSE)
    assert inexact_io.read_journal(csv) == {T0: "partial"}
    assert inexact_io.discard(csv, [T0], Reason.PARTIAL)
    assert not inexact_io.journal_path(csv).exists()


def test_verify_lists_a_pending_revision_without_failing(tmp_path):
    csv = tmp_path / "BTC_1m_data.csv"
    csv.write_text(ROWS)
    old = Row(T0, "1", "1", "1", "1", "0.5")
    revisions_io.append(csv, [Revision(old, Row(T0, "1", "1", "1", "1", "0.75"), "x", T0)])
    out, err = io.StringIO(), io.StringIO()
    assert run_verify([csv], out=out, err=err) == 0
    assert out.getvalue() == (
        f"{csv}:2: revised: 2023-11-14 22:14:00 x: ours 1 1 1 1 0.5 new 1 1 1 1 0.75 "
        "(run hlstream repair)\n"
    )
    assert err.getvalue().endswith(
        "1 file, 1 row: ok, 1 revision pending (hlstream repair applies them)\n"
    )
    revisions_io.revisions_path(csv).write_text("not a revisions file\n")
    out = io.StringIO()
    assert run_verify([csv], out=out, err=io.StringIO()) == 1  # unreadable: a defect
    assert f"{csv}:0: revisions: BTC_1m_data.csv.revisions cannot be read" in out.getvalue()
