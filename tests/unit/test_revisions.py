"""Revisions of written rows: the `{file}.revisions` record, and applying it (pure), plus
the durable append (common/revisions.py, revisions_io.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlstream.common import revisions_io
from hlstream.common.csvrow import Row
from hlstream.common.errors import IntegrityError
from hlstream.common.revisions import (
    HEADER,
    VENUE_MISMATCH,
    Revision,
    apply_revisions,
    format_revision,
    parse_revisions,
    pending_revisions,
)

M = 60_000
T0 = 1_764_500_040_000 - 1_764_500_040_000 % M


def revision() -> Revision:
    ours = Row(T0, "100", "101", "99", "100", "2.5")
    new = Row(T0, "100", "101", "99", "100.5", "3")
    return Revision(ours, new, VENUE_MISMATCH, T0 + 5 * M)


def test_a_revision_line_round_trips_and_a_torn_tail_is_ignored():
    rev = revision()
    line = format_revision(rev)
    assert line == (
        "2025-11-30 10:54:00,100,101,99,100,2.5,100,101,99,100.5,3,venue_mismatch,"
        "2025-11-30 10:59:00\n"
    )
    text = HEADER + "\n" + line + line[:20]
    (parsed,) = parse_revisions(text)
    assert parsed.old == rev.old and parsed.new == rev.new
    assert parsed.reason == VENUE_MISMATCH


def test_a_revisions_file_with_a_bad_line_is_refused():
    with pytest.raises(IntegrityError, match="line 2"):
        parse_revisions(HEADER + "\nnot,a,revision\n")
    with pytest.raises(IntegrityError, match="header"):
        parse_revisions("Datetime,Reason\n")


def test_applying_revisions_is_idempotent_and_leaves_other_rows_alone():
    rev = revision()
    other = Row(T0 + M, "100.5", "100.5", "100.5", "100.5", "0")
    rows = [rev.old, other]
    first = apply_revisions(rows, [rev])
    assert first.rows == [rev.new, other] and first.applied == 1
    assert pending_revisions(rows, [rev]) == [rev]
    again = apply_revisions(first.rows, [rev])
    assert again.rows == first.rows and again.applied == 0 and again.already == 1
    assert pending_revisions(first.rows, [rev]) == []


def test_a_row_matching_neither_side_is_a_conflict_and_kept():
    rev = revision()
    changed = Row(T0, "1", "1", "1", "1", "1")
    result = apply_revisions([changed], [rev])
    assert result.rows == [changed] and result.conflicts == (rev,) and result.applied == 0
    assert apply_revisions([], [rev]).missing == (rev,)


def test_the_revisions_file_is_appended_durably_and_read_back(tmp_path: Path):
    csv = tmp_path / "BTC_1m_data.csv"
    assert revisions_io.read(csv) == []
    rev = revision()
    revisions_io.append(csv, [rev])
    revisions_io.append(csv, [])
    revisions_io.append(csv, [rev])
    text = revisions_io.revisions_path(csv).read_text()
    assert text.count(HEADER) == 1 and text.startswith(HEADER + "\n")
    assert revisions_io.read(csv) == [rev, rev]


prices = st.decimals(min_value=1, max_value=10_000, places=3).map(str)
rows_st = st.builds(
    lambda o, h, lo, c, v: Row(T0, o, h, lo, c, v), prices, prices, prices, prices, prices
)


@given(rows_st, rows_st, st.integers(0, 10**6))
def test_any_revision_round_trips_and_applies_exactly_once(old: Row, new: Row, later_s: int):
    rev = Revision(old, new, VENUE_MISMATCH, T0 + later_s * 1000)
    (parsed,) = parse_revisions(HEADER + "\n" + format_revision(rev))
    assert (parsed.old, parsed.new, parsed.reason) == (old, new, VENUE_MISMATCH)
    once = apply_revisions([old], [parsed])
    assert once.rows == [new]
    assert apply_revisions(once.rows, [parsed]).rows == [new]
