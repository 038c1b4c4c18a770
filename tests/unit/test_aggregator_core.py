"""The bar state machine: windows, OHLCV updates, grace, carry-forward, late trades, partial."""

from __future__ import annotations

from hlstream.common.tape.format import coverage_start
from hlstream.services.aggregator.checkpoint import decode_checkpoint, encode_checkpoint
from hlstream.services.aggregator.core import (
    advance,
    apply_trades,
    new_state,
    next_deadline,
    seed_trades,
    taint,
)
from tests.support.trades import make_trade

T0 = 1_700_000_040_000  # aligned to 5 s and 1 m: 2023-11-14 22:14:00 UTC
S5 = 5_000


def _state(joined_ms: int = T0 - 1, grace_ms: int = 2_000, intervals=None):
    return new_state(("BTC", "ETH"), intervals or {"5s": S5}, grace_ms, joined_ms)


def test_trades_in_one_window_make_one_bar_with_exact_ohlcv():
    state = _state()
    apply_trades(
        state,
        [
            make_trade(price="100.5", size="0.1", ts_ms=T0 + 10),
            make_trade(price="101.25", size="0.02", ts_ms=T0 + 20),
            make_trade(price="99.0", size="0.3", ts_ms=T0 + 30),
            make_trade(price="100.0", size="1", ts_ms=T0 + 40),
        ],
    )
    bars = advance(state, T0 + S5 + 2_000)
    assert len(bars) == 1
    bar = bars[0]
    assert (bar.open, bar.high, bar.low, bar.close) == ("100.5", "101.25", "99.0", "100.0")
    assert bar.volume == "1.42"
    assert bar.trades == 4
    assert bar.start_ms == T0


def test_window_stays_open_until_grace_has_passed():
    state = _state()
    apply_trades(state, [make_trade(ts_ms=T0 + 10)])
    assert advance(state, T0 + S5 + 1_999) == []
    assert len(advance(state, T0 + S5 + 2_000)) == 1


def test_out_of_order_batch_within_grace_lands_in_the_right_windows():
    state = _state()
    apply_trades(
        state,
        [
            make_trade(price="2.0", ts_ms=T0 + S5 + 1),  # newer first, like the fixture
            make_trade(price="1.0", ts_ms=T0 + 4_999),
        ],
    )
    bars = advance(state, T0 + 2 * S5 + 2_000)
    assert [(b.start_ms, b.close) for b in bars] == [(T0, "1.0"), (T0 + S5, "2.0")]


def test_open_and_close_follow_exchange_time_not_arrival_order():
    state = _state()
    apply_trades(
        state,
        [
            make_trade(price="3.0", ts_ms=T0 + 300),
            make_trade(price="1.0", ts_ms=T0 + 100),
            make_trade(price="2.0", ts_ms=T0 + 200),
        ],
    )
    bar = advance(state, T0 + S5 + 2_000)[0]
    assert (bar.open, bar.close) == ("1.0", "3.0")


def test_empty_windows_are_carried_forward_at_previous_close():
    state = _state()
    apply_trades(state, [make_trade(price="42.5", ts_ms=T0 + 1)])
    bars = advance(state, T0 + 4 * S5 + 2_000)
    assert [b.start_ms for b in bars] == [T0, T0 + S5, T0 + 2 * S5, T0 + 3 * S5]
    for bar in bars[1:]:
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (
            "42.5",
            "42.5",
            "42.5",
            "42.5",
            "0.0",
            0,
        )


def test_carry_forward_fills_windows_between_trades_without_holes():
    state = _state()
    apply_trades(state, [make_trade(price="1.0", ts_ms=T0 + 1)])
    apply_trades(state, [make_trade(price="2.0", ts_ms=T0 + 3 * S5 + 1)])
    bars = advance(state, T0 + 4 * S5 + 2_000)
    assert [(b.start_ms, b.close, b.trades) for b in bars] == [
        (T0, "1.0", 1),
        (T0 + S5, "1.0", 0),
        (T0 + 2 * S5, "1.0", 0),
        (T0 + 3 * S5, "2.0", 1),
    ]


def test_no_bars_before_the_first_trade_of_a_coin():
    state = _state()
    assert advance(state, T0 + 10 * S5) == []


def test_trade_for_a_closed_window_is_late_and_not_merged():
    state = _state()
    apply_trades(state, [make_trade(price="1.0", ts_ms=T0 + 1)])
    first = advance(state, T0 + S5 + 2_000)
    late = apply_trades(state, [make_trade(price="9.0", ts_ms=T0 + 2)])
    assert len(late) == 1 and late[0].window_ms == T0
    assert state.late_trades == 1
    later = advance(state, T0 + 2 * S5 + 2_000)
    assert first[0].high == "1.0"
    assert [(b.start_ms, b.high) for b in later] == [(T0 + S5, "1.0")]


def test_window_started_before_join_is_partial():
    state = _state(joined_ms=T0 + 1)
    apply_trades(state, [make_trade(ts_ms=T0 + 2), make_trade(ts_ms=T0 + S5 + 2)])
    bars = advance(state, T0 + 2 * S5 + 2_000)
    assert [b.complete for b in bars] == [False, True]


def test_taint_marks_overlapping_windows_partial_for_that_coin_only():
    state = _state()
    apply_trades(state, [make_trade("BTC", ts_ms=T0 + 1), make_trade("ETH", ts_ms=T0 + 1)])
    taint(state, "BTC", T0 + S5 + 100, T0 + S5 + 200)
    bars = advance(state, T0 + 3 * S5 + 2_000)
    flags = {(b.coin, b.start_ms): b.complete for b in bars}
    assert flags[("BTC", T0)] is True
    assert flags[("BTC", T0 + S5)] is False
    assert flags[("BTC", T0 + 2 * S5)] is True
    assert flags[("ETH", T0 + S5)] is True


def test_all_intervals_come_from_one_stream():
    state = _state(intervals={"5s": S5, "1m": 60_000})
    apply_trades(state, [make_trade(ts_ms=T0 + i * 1_000, size="1") for i in range(60)])
    bars = advance(state, T0 + 60_000 + 2_000)
    minute = [b for b in bars if b.interval == "1m"]
    assert len(minute) == 1 and minute[0].volume == "60.0" and minute[0].trades == 60
    assert len([b for b in bars if b.interval == "5s"]) == 12


def test_one_day_windows_start_at_midnight_utc():
    day = 86_400_000
    state = _state(joined_ms=0, intervals={"1d": day})
    apply_trades(state, [make_trade(ts_ms=T0)])
    bar = advance(state, T0 + 2 * day)[0]
    assert bar.start_ms % day == 0 and bar.start_ms <= T0 < bar.start_ms + day


def test_next_deadline_is_window_end_plus_grace():
    state = _state()
    assert next_deadline(state) is None
    apply_trades(state, [make_trade(ts_ms=T0 + 1)])
    assert next_deadline(state) == T0 + S5 + 2_000


def test_unknown_coin_is_ignored():
    state = _state()
    apply_trades(state, [make_trade("NOPE", ts_ms=T0 + 1)])
    assert advance(state, T0 + 3 * S5) == []


def test_taint_reports_windows_already_emitted():
    state = _state()
    apply_trades(state, [make_trade(ts_ms=T0 + 1)])
    advance(state, T0 + 2 * S5 + 2_000)  # emitted T0 and T0 + S5
    assert sum(e.windows for e in taint(state, "BTC", T0 + 100, T0 + S5 + 100)) == 2
    assert taint(state, "BTC", T0 + 2 * S5 + 1, T0 + 3 * S5) == []
    assert taint(state, "ETH", T0, T0 + S5) == []  # ETH never emitted anything


def test_retired_coin_emits_nothing_more_while_others_continue():
    from hlstream.services.aggregator.core import retire_coin

    state = _state()
    apply_trades(state, [make_trade("BTC", ts_ms=T0 + 1), make_trade("ETH", ts_ms=T0 + 1)])
    assert retire_coin(state, "ETH")
    assert not retire_coin(state, "ETH")
    apply_trades(state, [make_trade("ETH", ts_ms=T0 + S5 + 1)])
    bars = advance(state, T0 + 3 * S5 + 2_000)
    assert {b.coin for b in bars} == {"BTC"}


def test_illiquid_coin_takes_its_close_from_the_replay_and_carries_from_the_first_window():
    joined = T0 + 3 * S5 + 2_500  # started mid-window: windows before T0 + 3*S5 are closed
    state = new_state(("BTC",), {"5s": S5}, 2_000, joined)
    replay = [  # the venue's subscribe replay: older trades, newest first
        make_trade(price="7.5", ts_ms=T0 - 20_000, tid=2),
        make_trade(price="7.25", ts_ms=T0 - 40_000, tid=1),
    ]
    late = apply_trades(state, replay)
    assert len(late) == 2  # counted as late, never merged into a bar
    assert advance(state, T0 + 5 * S5 + 2_000) == []  # no close yet: nothing to carry
    state = new_state(("BTC",), {"5s": S5}, 2_000, joined)
    seed_trades(state, [item.trade for item in apply_trades(state, replay)])
    bars = advance(state, T0 + 5 * S5 + 2_000)
    assert [b.start_ms for b in bars] == [T0 + 3 * S5, T0 + 4 * S5]
    assert all((b.open, b.close, b.volume, b.trades) == ("7.5", "7.5", "0.0", 0) for b in bars)


def test_a_late_trade_never_replaces_a_close_the_series_already_has():
    state = _state()
    apply_trades(state, [make_trade(price="100", ts_ms=T0 + 10)])
    advance(state, T0 + S5 + 2_000)
    late = apply_trades(state, [make_trade(price="50", ts_ms=T0 + 20)])
    assert len(late) == 1
    seed_trades(state, [item.trade for item in late])
    (carry,) = advance(state, T0 + 2 * S5 + 2_000)
    assert carry.close == "100.0"


def test_a_gap_marker_covers_the_windows_of_both_boundary_milliseconds() -> None:
    state = new_state(("BTC",), {"5s": S5}, 0, T0 - 1)
    apply_trades(state, [make_trade(ts_ms=T0 + 4_999, tid=1), make_trade(ts_ms=T0 + 10_000, tid=2)])
    taint(state, "BTC", T0 + 4_999, T0 + 10_000)  # [from_ms, to_ms], inclusive
    apply_trades(state, [make_trade(ts_ms=T0 + 15_000, tid=3)])

    bars = advance(state, T0 + 20_000)

    assert [(b.start_ms - T0, b.complete) for b in bars] == [
        (0, False),
        (5_000, False),
        (10_000, False),
        (15_000, True),
    ]


def test_a_window_starting_at_the_oldest_replayed_time_is_not_complete():
    # The venue stamps a block with one time; a 30-trade replay starting exactly at a window
    # start may have cut that block, so the window is short and must not be claimed whole.
    joined = T0 + S5 + 500
    state = new_state(("BTC",), {"5s": S5}, 2_000, joined)
    replay = [  # newest first, as the venue sends it
        make_trade(price="101", ts_ms=T0 + S5 + 400),
        make_trade(price="100", ts_ms=T0 + 1),
        make_trade(price="99", ts_ms=T0),
        make_trade(price="98", ts_ms=T0),
    ]
    state.joined_by_coin["BTC"] = coverage_start(replay)
    assert apply_trades(state, replay) == []

    bars = advance(state, T0 + 2 * S5 + 2_000)

    assert [(b.start_ms, b.complete) for b in bars] == [(T0, False), (T0 + S5, True)]


def test_coverage_starts_strictly_after_the_oldest_replayed_time():
    replay = [make_trade(ts_ms=T0 + 7), make_trade(ts_ms=T0), make_trade(ts_ms=T0 + 3)]
    assert coverage_start(replay) == T0 + 1
    assert coverage_start([]) is None


def test_a_newer_late_trade_replaces_a_seeded_close_until_the_first_bar():
    state = new_state(("BTC",), {"5s": S5, "1m": 60_000}, 2_000, T0 + 37_500)
    seed_trades(state, [make_trade(price="24.841", ts_ms=T0 - 5_000)])  # before the 1m window
    later = make_trade(price="24.837", ts_ms=T0 + 20_863)  # in it, before the first 5s one
    seed_trades(state, [item.trade for item in apply_trades(state, [later])])

    bars = advance(state, T0 + 45_000 + 2_000)

    five = [b for b in bars if b.interval == "5s"]
    assert [(b.start_ms, b.close) for b in five] == [
        (T0 + 35_000, "24.837"),
        (T0 + 40_000, "24.837"),
    ]


def test_a_seeded_close_stays_replaceable_across_a_checkpoint():
    state = new_state(("BTC",), {"5s": S5, "1m": 60_000}, 2_000, T0 + 37_500)
    seed_trades(state, [make_trade(price="24.841", ts_ms=T0 - 5_000)])
    restored = decode_checkpoint(encode_checkpoint(state, {}, [], T0)).state
    seed_trades(
        restored,
        [
            item.trade
            for item in apply_trades(restored, [make_trade(price="24.837", ts_ms=T0 + 20_863)])
        ],
    )

    bars = advance(restored, T0 + 40_000 + 2_000)

    assert [(b.interval, b.close) for b in bars] == [("5s", "24.837")]


def test_a_gap_over_an_empty_window_marks_its_carry_bar_partial_once_later_trades_arrive():
    state = new_state(("BTC",), {"5s": S5}, 2_000, T0 - 1)
    apply_trades(state, [make_trade(ts_ms=T0 + 1)])
    advance(state, T0 + S5 + 2_000)  # T0 emitted; T0 + S5 not closed yet
    taint(state, "BTC", T0 + S5 + 100, T0 + S5 + 200)
    apply_trades(state, [make_trade(ts_ms=T0 + 2 * S5 + 1)])
    assert advance(state, T0 + 2 * S5 + 1_000) == []  # T0 + S5 is still within grace
    bars = advance(state, T0 + 3 * S5 + 2_000)
    assert [(b.start_ms - T0, b.trades, b.complete) for b in bars] == [
        (S5, 0, False),
        (2 * S5, 1, True),
    ]
