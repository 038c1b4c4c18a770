"""The venue audit's pure core: rows against candles, seconds rows through their minute, the
REST weight plan, and revisions (writer/audit.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlstream.common.csvrow import Row
from hlstream.common.messages import Bar
from hlstream.common.revisions import VENUE_MISMATCH
from hlstream.services.writer.audit import (
    AuditLedger,
    AuditRequest,
    audit_minute,
    audit_period_s,
    compare_row,
    plan_requests,
    revision_of,
)
from tests.support.audit_weight import weight_per_hour

M = 60_000
S5 = 5_000
T0 = 1_764_500_040_000 - 1_764_500_040_000 % M


def candle(
    start: int, o: str, h: str, lo: str, c: str, v: str, n: int, interval: str = "1m"
) -> Bar:
    return Bar("BTC", interval, start, o, h, lo, c, v, n, True, "rest")


def test_a_row_equal_to_the_candle_as_decimals_matches():
    ours = Row(T0, "100.50", "101", "99.0", "100", "2.500")
    assert compare_row(ours, candle(T0, "100.5", "101.0", "99", "100.0", "2.5", 7)) is None
    assert compare_row(ours, candle(T0, "100.5", "101.0", "99", "100.0", "2.5", 7), 7) is None


def test_each_differing_field_is_named_with_both_values():
    ours = Row(T0, "100", "101", "99", "100", "2.5")
    found = compare_row(ours, candle(T0, "100", "101", "99", "100.1", "2.6", 9), our_trades=8)
    assert found is not None
    assert found.fields == (("close", "100", "100.1"), ("volume", "2.5", "2.6"), ("n", "8", "9"))


def test_n_is_compared_only_where_ours_is_known():
    ours = Row(T0, "1", "1", "1", "1", "1")
    assert compare_row(ours, candle(T0, "1", "1", "1", "1", "1", 5)) is None
    assert compare_row(ours, candle(T0, "1", "1", "1", "1", "1", 5), our_trades=4) is not None


def seconds_rows() -> list[Row]:
    """A minute of 5s rows: a carry row first (previous close 99), then trades."""
    rows = [Row(T0, "99", "99", "99", "99", "0")]
    price = Decimal(100)
    for k in range(1, 12):
        p = str(price + k)
        rows.append(Row(T0 + k * S5, p, str(price + k + 1), str(price + k - 1), p, "0.5"))
    return rows


MINUTE = candle(T0, "101", "112", "100", "111", "5.5", 11)


def test_seconds_rows_that_make_up_the_venue_minute_match():
    audit = audit_minute(seconds_rows(), MINUTE, S5, trades=[0] + [1] * 11)
    assert audit.problems == () and len(audit.starts) == 12


def test_one_short_5s_row_flags_its_minute():
    rows = seconds_rows()
    rows[5] = Row(rows[5].start_ms, rows[5].open, rows[5].high, rows[5].low, rows[5].close, "0.25")
    audit = audit_minute(rows, MINUTE, S5)
    assert audit.problems == ("volume 5.25 != 5.5",)
    assert audit.starts == tuple(T0 + k * S5 for k in range(12))


def test_counts_open_close_high_and_low_are_each_checked():
    rows = seconds_rows()
    assert audit_minute(rows, MINUTE, S5, trades=[0] + [1] * 10 + [0]).problems == ("n 10 != 11",)
    other = candle(T0, "100", "113", "99", "110", "5.5", 11)
    assert set(audit_minute(rows, other, S5).problems) == {
        "open 101 != 100",
        "close 111 != 110",
        "high 112 != 113",
        "low 100 != 99",
    }


def test_a_missing_seconds_row_is_a_problem_not_a_crash():
    assert audit_minute(seconds_rows()[:-1], MINUTE, S5).problems == ("rows 11 of 12 windows",)


def test_a_flat_minute_needs_only_carry_rows():
    flat = [Row(T0 + k * S5, "99", "99", "99", "99", "0") for k in range(12)]
    assert audit_minute(flat, candle(T0, "99", "99", "99", "99", "0", 0), S5).problems == ()
    assert (
        audit_minute(flat, MINUTE, S5).problems[-1] == "no traded row in a minute the venue traded"
    )


def test_requests_batch_each_series_and_respect_the_candle_cap():
    pending = {
        ("BTC", "1m"): [T0 + 3 * M, T0, T0 + M],
        ("ETH", "1m"): [T0 + k * M for k in range(7)],
    }
    plan = plan_requests(pending, {"1m": M}, max_candles=5)
    assert plan == [
        AuditRequest("BTC", "1m", T0, T0 + 4 * M, 4),
        AuditRequest("ETH", "1m", T0, T0 + 5 * M, 5),
        AuditRequest("ETH", "1m", T0 + 5 * M, T0 + 7 * M, 2),
    ]
    assert plan[0].weight == 20 + 4 / 60


@given(st.sets(st.integers(min_value=0, max_value=3000), min_size=1), st.integers(1, 600))
def test_every_pending_window_is_in_exactly_one_request(offsets: set[int], cap: int) -> None:
    starts = [T0 + k * M for k in offsets]
    plan = plan_requests({("BTC", "1m"): starts}, {"1m": M}, max_candles=cap)
    for start in starts:
        assert sum(r.start_ms <= start < r.end_ms for r in plan) == 1
    assert all(0 < r.candles <= cap and r.end_ms - r.start_ms == r.candles * M for r in plan)


@pytest.mark.parametrize("series", [1, 7, 200, 1000])
def test_the_audit_spends_at_most_its_share_of_the_venue_weight(series: int) -> None:
    share, settle = 0.25, 300.0
    per_hour = weight_per_hour(series, share, settle, M)
    assert per_hour <= share * 1200 * 60
    assert audit_period_s(series, share, settle, M) >= settle


def test_weight_numbers_at_7_and_200_coins():
    # 7 coins: the settle delay rules; one request of 5 candles per coin every 5 minutes.
    assert weight_per_hour(7, 0.25, 300.0, M) == pytest.approx(7 * 12 * (20 + 5 / 60))
    # 200 coins: the share rules; a request of 14 candles per coin every 14 minutes.
    assert audit_period_s(200, 0.25, 300.0, M) == 840
    assert weight_per_hour(200, 0.25, 300.0, M) == pytest.approx(200 * 3600 / 840 * (20 + 14 / 60))
    with pytest.raises(ValueError, match="exceed"):
        audit_period_s(20_000, 0.25, 300.0, M)


@given(
    st.integers(1, 3000),
    st.floats(0.05, 0.5),
    st.sampled_from([M, 5 * M, 60 * M, 1440 * M]),
    st.floats(30.0, 900.0),
)
def test_no_plan_exceeds_the_share_or_comes_before_the_settle_delay(
    series: int, share: float, interval_ms: int, settle: float
) -> None:
    assert weight_per_hour(series, share, settle, interval_ms) <= share * 1200 * 60 + 1e-6
    period = audit_period_s(series, share, settle, interval_ms)
    assert period >= settle and (period * 1000) % interval_ms == 0


def test_a_mismatched_row_is_revised_to_the_venue_candle():
    ours = Row(T0, "100", "101", "99", "100", "2.5")
    rev = revision_of(ours, candle(T0, "100", "101", "99", "100.5", "3", 9), VENUE_MISMATCH, T0)
    assert rev.old == ours and rev.new == Row(T0, "100", "101", "99", "100.5", "3")


def test_the_ledger_waits_for_the_settle_delay_and_judges_each_row_once():
    ledger = AuditLedger(M, settle_ms=120_000, retry_ms=60_000, max_attempts=3)
    good = Row(T0, "100", "101", "99", "100", "2")
    bad = Row(T0 + M, "100", "101", "99", "100", "2")
    ledger.add(good, 5)
    ledger.add(bad, None)
    assert ledger.due(T0 + M + 119_999) == []
    assert ledger.due(T0 + 3 * M) == [T0]
    candles = {
        T0: candle(T0, "100", "101", "99", "100", "2.0", 5),
        T0 + M: candle(T0 + M, "100", "101", "99", "100", "2.5", 6),
    }
    outcomes = ledger.settle(ledger.due(T0 + 4 * M), candles, T0 + 4 * M)
    assert [(o.unit_ms, o.problems) for o in outcomes] == [
        (T0, ()),
        (T0 + M, ("volume 2 != 2.5",)),
    ]
    assert ledger.due(T0 + 10 * M) == [] and ledger.pending_rows() == 0
    assert (ledger.tally.audited, ledger.tally.matched, ledger.tally.mismatched) == (2, 1, 1)


def test_a_missing_candle_is_retried_then_counted_unauditable():
    ledger = AuditLedger(M, settle_ms=0, retry_ms=30_000, max_attempts=2)
    ledger.add(Row(T0, "1", "1", "1", "1", "1"), None)
    assert ledger.settle([T0], {}, T0 + M) == []
    assert ledger.due(T0 + M) == [] and ledger.due(T0 + M + 30_000) == [T0]
    assert ledger.settle([T0], {}, T0 + M + 30_000) == []
    assert ledger.pending_rows() == 0 and ledger.tally.unauditable == 1


def test_seconds_rows_are_audited_by_their_minute_and_a_short_one_flags_it():
    ledger = AuditLedger(S5, settle_ms=60_000, retry_ms=1, max_attempts=1)
    rows = seconds_rows()
    rows[3] = Row(rows[3].start_ms, rows[3].open, rows[3].high, rows[3].low, rows[3].close, "0.4")
    for row in rows:
        ledger.add(row, None)
    assert ledger.due(T0 + M + 59_999) == []
    (outcome,) = ledger.settle(ledger.due(T0 + 2 * M), {T0: MINUTE}, T0 + 2 * M)
    assert outcome.problems == ("volume 5.4 != 5.5",) and len(outcome.rows) == 12
    assert ledger.tally.mismatched == 12


def test_a_minute_cut_by_a_restart_is_unauditable_not_a_mismatch():
    ledger = AuditLedger(S5, settle_ms=0, retry_ms=1, max_attempts=1)
    for row in seconds_rows()[6:]:
        ledger.add(row, None)
    assert ledger.settle([T0], {T0: MINUTE}, T0 + M) == []
    assert ledger.tally.unauditable == 6 and ledger.tally.mismatched == 0


def test_a_minute_of_seconds_rows_waits_for_its_last_row():
    ledger = AuditLedger(S5, settle_ms=1_000, retry_ms=60_000, max_attempts=1)
    rows = seconds_rows()
    for row in rows[:-1]:
        ledger.add(row, None)
    assert ledger.due(T0 + M + 1_000) == [], "the minute's last row is still to come"
    ledger.add(rows[-1], None)
    assert ledger.due(T0 + M + 2_000) == [T0]
