"""Unit tests for ingest's pure core: frame parsing, dedupe, replay gap detection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hlstream.common.errors import ConfigError, ProtocolError
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.format import format_trades, segment_day
from hlstream.common.universe import check_coins, universe_names
from hlstream.services.ingest.core.coverage import REPLAY_WAIT_S, Coverage
from hlstream.services.ingest.core.dedupe import Deduper, ReplayCheck, admit_batch
from hlstream.services.ingest.core.parse import PING, FrameKind, parse_frame

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hyperliquid"
MIN_MS = 60_000


def raw_trade(**overrides: Any) -> dict[str, Any]:
    trade: dict[str, Any] = {
        "coin": "BTC",
        "side": "B",
        "px": "63471.0",
        "sz": "0.01575",
        "time": 1785648521306,
        "hash": "0xabc",
        "tid": 957915869971548,
    }
    trade.update(overrides)
    return {key: value for key, value in trade.items() if value is not _MISSING}


_MISSING = object()


def trades_frame(*items: dict[str, Any]) -> str:
    return json.dumps({"channel": "trades", "data": list(items)})


def make_trade(ts_ms: int, tid: int, coin: str = "BTC") -> Trade:
    return Trade(coin, "buy", "1.0", "2.0", ts_ms, tid, "")


# ---- parse_frame -------------------------------------------------------------------------


def test_parses_recorded_trades_fixture() -> None:
    text = (FIXTURES / "quantick" / "ws_trades.json").read_bytes()

    frame = parse_frame(text)

    assert frame.kind is FrameKind.TRADES
    assert frame.rejected == 0
    assert frame.trades == (
        Trade(
            "BTC",
            "buy",
            "63471.0",
            "0.01575",
            1785648521306,
            957915869971548,
            "0xc5f5fba369499d57c76f044143696101e7001389044cbc2969bea6f6284d7742",
            (
                "0x818b120e0b475dc79d62092a3ae0d0e31cbf2c99",
                "0x6e8bc7cd0978397b06a14af2a8c31f5daeffea79",
            ),
        ),
        Trade(
            "BTC",
            "sell",
            "63470.0",
            "0.0002",
            1785648520020,
            643901415284239,
            "0x" + "0" * 64,
            (
                "0x72d73fea74d7ff40c3e5a70e17f5b1aaf47dfc26",
                "0x0ce048fe42c170e41740ee392e187f19515f339d",
            ),
        ),
    )


def test_side_b_is_buy_and_a_is_sell() -> None:
    frame = parse_frame(trades_frame(raw_trade(side="B"), raw_trade(side="A", tid=2)))

    assert [trade.side == "buy" for trade in frame.trades] == [True, False]


def test_time_in_seconds_becomes_milliseconds() -> None:
    frame = parse_frame(trades_frame(raw_trade(time=1785648521)))

    assert frame.trades[0].ts_ms == 1785648521000


def test_price_and_size_strings_are_kept_verbatim() -> None:
    frame = parse_frame(trades_frame(raw_trade(px="0.000120", sz="10.50")))

    assert (frame.trades[0].price, frame.trades[0].size) == ("0.000120", "10.50")


def test_missing_hash_defaults_to_empty() -> None:
    frame = parse_frame(trades_frame(raw_trade(hash=_MISSING)))

    assert frame.trades[0].hash == ""


@pytest.mark.parametrize("bad_hash", ["0xab\ncd", "0xab\r", 7])
def test_a_hash_the_tape_cannot_hold_is_dropped_and_the_trade_kept(bad_hash: object) -> None:
    frame = parse_frame(trades_frame(raw_trade(tid=1), raw_trade(tid=2, hash=bad_hash)))

    assert [(t.tid, t.hash) for t in frame.trades] == [(1, "0xabc"), (2, "")]
    assert frame.rejected == 0
    format_trades(frame.trades, "BTC", segment_day(frame.trades[0].ts_ms))  # taped: no raise


USERS = ("0x818b120e0b475dc79d62092a3ae0d0e31cbf2c99", "0x6e8bc7cd0978397b06a14af2a8c31f5daeffea79")


def test_users_are_kept_as_buyer_and_seller() -> None:
    frame = parse_frame(trades_frame(raw_trade(users=list(USERS)), raw_trade(tid=2)))

    assert [t.users for t in frame.trades] == [USERS, None]


@pytest.mark.parametrize(
    "bad_users",
    [
        None,
        [],
        [USERS[0]],
        [*USERS, USERS[0]],
        [USERS[0], 7],
        [USERS[0], USERS[1][:-1]],
        [USERS[0], USERS[1] + "0"],
        [USERS[0], "0x" + "z" * 40],
        [USERS[0], "0X" + "a" * 40],
        [USERS[0], "0x" + "a" * 39 + ","],
        "0xab",
        {"buyer": USERS[0]},
    ],
)
def test_users_that_are_not_two_addresses_are_dropped_and_the_trade_kept(
    bad_users: object,
) -> None:
    frame = parse_frame(
        trades_frame(raw_trade(tid=1, users=list(USERS)), raw_trade(tid=2, users=bad_users))
    )

    assert [(t.tid, t.users) for t in frame.trades] == [(1, USERS), (2, None)]
    assert frame.rejected == 0
    format_trades(frame.trades, "BTC", segment_day(frame.trades[0].ts_ms))  # taped: no raise


@pytest.mark.parametrize(
    "overrides",
    [
        {"px": _MISSING},
        {"px": "abc"},
        {"px": 63471.0},
        {"px": "NaN"},
        {"sz": "0"},
        {"sz": "-1"},
        {"tid": True},
        {"tid": "957915869971548"},
        {"tid": _MISSING},
        {"tid": -1},
        {"tid": 2**64},  # no bigger int fits on the bus
        {"side": "X"},
        {"side": "b"},
        {"time": _MISSING},
        {"time": 0},
        {"time": "soon"},
        {"time": 10**16},
        {"coin": _MISSING},
        {"coin": ""},
        {"coin": "BT\nC"},
    ],
)
def test_unusable_trade_is_rejected_and_counted(overrides: dict[str, Any]) -> None:
    frame = parse_frame(trades_frame(raw_trade(tid=1), raw_trade(**{"tid": 2, **overrides})))

    assert [trade.tid for trade in frame.trades] == [1]
    assert frame.rejected == 1


def test_non_object_trade_entry_is_rejected() -> None:
    frame = parse_frame(json.dumps({"channel": "trades", "data": [1, None, "x"]}))

    assert frame.trades == ()
    assert frame.rejected == 3


@pytest.mark.parametrize(
    "text",
    [
        "not json{",
        b"\xff\xfe",
        "[1, 2]",
        '"pong"',
        '{"data": []}',
        '{"channel": 5}',
        '{"channel": "trades", "data": {"coin": "BTC"}}',
        "[" * 100_000,
    ],
)
def test_malformed_frame_raises_protocol_error(text: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_frame(text)


def test_pong_is_classified() -> None:
    assert parse_frame('{"channel":"pong"}').kind is FrameKind.PONG


def test_error_frame_carries_its_text() -> None:
    frame = parse_frame('{"channel":"error","data":"Already subscribed: BTC"}')

    assert frame.kind is FrameKind.ERROR
    assert frame.error == "Already subscribed: BTC"


def test_subscription_response_is_classified() -> None:
    ack = {"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}}
    frame = parse_frame(json.dumps({"channel": "subscriptionResponse", "data": ack}))

    assert frame.kind is FrameKind.SUBSCRIBED
    assert frame.data == ack


def test_l2book_frame_is_passed_through_as_data() -> None:
    text = (FIXTURES / "quantick" / "ws_l2_book.json").read_text()

    frame = parse_frame(text)

    assert frame.kind is FrameKind.DATA
    assert frame.channel == "l2Book"
    assert frame.data["coin"] == "BTC"


def test_unknown_channel_is_classified_not_raised() -> None:
    frame = parse_frame('{"channel":"somethingNew","data":{}}')

    assert frame.kind is FrameKind.UNKNOWN
    assert frame.channel == "somethingNew"


def test_ping_is_compact_json() -> None:
    assert json.dumps({"method": "ping"}, separators=(",", ":")) == PING


# ---- Deduper ------------------------------------------------------------------------------


def test_replayed_batch_is_dropped() -> None:
    deduper = Deduper()
    batch = [make_trade(1000, 7), make_trade(1001, 3), make_trade(1002, 9)]
    deduper.admit(batch)

    fresh, duplicates = deduper.admit(batch)

    assert fresh == []
    assert duplicates == 3


def test_same_tid_at_another_time_or_coin_is_not_a_duplicate() -> None:
    deduper = Deduper()
    deduper.admit([make_trade(1000, 7)])

    fresh, duplicates = deduper.admit([make_trade(1001, 7), make_trade(1000, 7, coin="ETH")])

    assert len(fresh) == 2
    assert duplicates == 0


def test_duplicate_inside_one_batch_is_dropped() -> None:
    fresh, duplicates = Deduper().admit([make_trade(1000, 1), make_trade(1000, 1)])

    assert fresh == [make_trade(1000, 1)]
    assert duplicates == 1


def test_out_of_order_batches_keep_input_order_and_drop_only_repeats() -> None:
    deduper = Deduper()
    deduper.admit([make_trade(5000, 5), make_trade(3000, 3)])

    fresh, duplicates = deduper.admit(
        [make_trade(4000, 4), make_trade(3000, 3), make_trade(2000, 2)]
    )

    assert fresh == [make_trade(4000, 4), make_trade(2000, 2)]
    assert duplicates == 1


def test_keys_older_than_horizon_are_evicted() -> None:
    deduper = Deduper(horizon_ms=10 * MIN_MS)
    deduper.admit([make_trade(0, 1), make_trade(5 * MIN_MS, 2)])

    deduper.admit([make_trade(12 * MIN_MS, 3)])

    assert deduper.key_count() == 2  # ts 0 fell behind 12m - 10m


def test_unknown_trade_older_than_horizon_is_dropped_as_too_old() -> None:
    deduper = Deduper(horizon_ms=10 * MIN_MS)
    deduper.admit([make_trade(0, 1), make_trade(20 * MIN_MS, 2)])

    fresh, duplicates = deduper.admit([make_trade(0, 1), make_trade(5 * MIN_MS, 9)])

    assert fresh == []
    assert duplicates == 0
    assert deduper.too_old == 2


# ---- replay gap detection -----------------------------------------------------------------


def replay_gap(coin: str, replay: list[Trade], known: int, last_ts_ms: int | None) -> Gap | None:
    """What ReplayCheck says of `replay` as the first frame of `coin` after a connect."""
    check = ReplayCheck()
    check.on_connect([coin])
    return check.check(coin, replay, known, last_ts_ms)


def test_replay_overlapping_known_trades_reports_no_gap() -> None:
    replay = [make_trade(1000, 1), make_trade(2000, 2)]

    assert replay_gap("BTC", replay, known=1, last_ts_ms=1000) is None


def test_replay_without_overlap_reports_gap_from_last_seen_to_oldest_replay() -> None:
    replay = [make_trade(9000, 9), make_trade(7000, 7), make_trade(8000, 8)]

    gap = replay_gap("BTC", replay, known=0, last_ts_ms=5000)

    assert gap == Gap("BTC", 5000, 7000, "replay_no_overlap")


def test_empty_replay_or_first_ever_connect_reports_no_gap() -> None:
    assert replay_gap("BTC", [], known=0, last_ts_ms=5000) is None
    assert replay_gap("BTC", [make_trade(9000, 9)], known=0, last_ts_ms=None) is None


def test_replay_not_newer_than_last_seen_reports_no_gap() -> None:
    assert replay_gap("BTC", [make_trade(4000, 4)], known=0, last_ts_ms=5000) is None


def test_replay_starting_in_the_block_of_the_last_seen_trade_reports_that_millisecond() -> None:
    # We had part of the block stamped 5000; the replay, none of whose trades we know, starts
    # inside the same block: trades of it between ours and the replay's may be missing.
    replay = [make_trade(5000, 8), make_trade(5000, 9), make_trade(6000, 10)]

    gap = replay_gap("BTC", replay, known=0, last_ts_ms=5000)

    assert gap == Gap("BTC", 5000, 5000, "replay_no_overlap")


def test_replay_check_only_judges_first_frame_per_coin_after_connect() -> None:
    check = ReplayCheck()
    check.on_connect(["BTC", "ETH"])

    first = check.check("BTC", [make_trade(9000, 9)], known=0, last_ts_ms=5000)
    second = check.check("BTC", [make_trade(19000, 19)], known=0, last_ts_ms=9000)

    assert first == Gap("BTC", 5000, 9000, "replay_no_overlap")
    assert second is None
    assert check.is_pending("ETH")


def test_deduper_and_replay_check_together_detect_missed_trades() -> None:
    deduper = Deduper()
    deduper.admit([make_trade(1000, 1), make_trade(2000, 2)])
    check = ReplayCheck()
    check.on_connect(["BTC"])
    replay = [make_trade(5000, 5), make_trade(6000, 6)]

    known = deduper.count_known(replay)
    gap = check.check("BTC", replay, known, deduper.newest_ms("BTC"))

    assert gap == Gap("BTC", 2000, 5000, "replay_no_overlap")


def test_admit_batch_reports_the_gap_a_non_overlapping_replay_proves() -> None:
    deduper, check = Deduper(), ReplayCheck()
    admit_batch(deduper, check, "BTC", [make_trade(1000, 1), make_trade(2000, 2)])
    check.on_connect(["BTC"])

    admission = admit_batch(deduper, check, "BTC", [make_trade(5000, 5), make_trade(6000, 6)])

    assert [t.tid for t in admission.fresh] == [5, 6]
    assert admission.gap == Gap("BTC", 2000, 5000, "replay_no_overlap")


def test_admit_batch_overlapping_replay_publishes_only_new_trades_and_no_gap() -> None:
    deduper, check = Deduper(), ReplayCheck()
    admit_batch(deduper, check, "BTC", [make_trade(1000, 1), make_trade(2000, 2)])
    check.on_connect(["BTC"])

    admission = admit_batch(deduper, check, "BTC", [make_trade(2000, 2), make_trade(3000, 3)])

    assert [t.tid for t in admission.fresh] == [3]
    assert (admission.duplicates, admission.too_old, admission.gap) == (1, 0, None)


def test_admit_batch_reads_known_keys_before_admitting() -> None:
    # A replay that is entirely new: read after admit, it would look fully known (no gap).
    deduper, check = Deduper(), ReplayCheck()
    admit_batch(deduper, check, "BTC", [make_trade(1000, 1)])
    check.on_connect(["BTC"])

    admission = admit_batch(deduper, check, "BTC", [make_trade(9000, 9)])

    assert admission.fresh and admission.gap == Gap("BTC", 1000, 9000, "replay_no_overlap")


def test_admit_batch_outside_a_replay_never_reports_a_gap() -> None:
    deduper, check = Deduper(), ReplayCheck()
    admit_batch(deduper, check, "BTC", [make_trade(1000, 1)])

    admission = admit_batch(deduper, check, "BTC", [make_trade(9000, 9)])

    assert [t.tid for t in admission.fresh] == [9] and admission.gap is None


# ---- coin validation ----------------------------------------------------------------------


META = {"universe": [{"name": "BTC"}, {"name": "ETH"}, {"name": "kPEPE"}]}
SPOT_META = {
    "universe": [{"name": "PURR/USDC", "index": 0}, {"name": "@107", "index": 107}],
    "tokens": [],
}


def test_universe_names_include_perps_spot_names_and_spot_indexes() -> None:
    names = universe_names(META, SPOT_META, {"xyz": {"universe": [{"name": "xyz:TSLA"}]}})

    assert names == {"BTC", "ETH", "kPEPE", "PURR/USDC", "@0", "@107", "xyz:TSLA"}


def test_universe_names_reject_wrong_shape() -> None:
    with pytest.raises(ProtocolError):
        universe_names({"universe": "BTC"}, SPOT_META)


def test_known_coins_pass() -> None:
    check_coins(["BTC", "kPEPE", "PURR/USDC", "@0"], universe_names(META, SPOT_META))


@pytest.mark.parametrize(
    ("coin", "hint"),
    [("BTCC", "did you mean BTC?"), ("KPEPE", "did you mean kPEPE?")],
)
def test_unknown_coin_suggests_close_match(coin: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_coins(["ETH", coin], universe_names(META, SPOT_META))

    assert str(info.value) == f"unknown coin {coin!r}: {hint}"


def test_unknown_coin_without_close_match_says_so() -> None:
    with pytest.raises(ConfigError, match="unknown coin 'NOPE'"):
        check_coins(["NOPE"], universe_names(META, SPOT_META))


def test_key_cap_bounds_memory_and_a_forgotten_key_is_never_published_again() -> None:
    deduper = Deduper(max_keys_per_coin=100)
    trades = [make_trade(1_000 + i, 50_000 + i) for i in range(500)]
    fresh, _ = deduper.admit(trades)
    assert len(fresh) == 500
    assert deduper.key_count() == 100
    again, duplicates = deduper.admit(trades[:10] + trades[-10:])
    assert again == [] and duplicates == 10 and deduper.too_old == 10


# ---- coverage ------------------------------------------------------------------------------


def test_coverage_moves_only_while_every_live_link_is_up_idle_and_replayed() -> None:
    replay = ReplayCheck()
    coverage = Coverage(replay, now_ms=0)
    coverage.live = {0, 1}
    coverage.on_connected(0, now_s=10.0)
    coverage.on_mark(0, 5_000)
    coverage.on_mark(1, 4_000)
    assert coverage.advance(9_000, 10.0, idle=True) == 0  # link 1 is down

    coverage.on_connected(1, now_s=10.0)
    replay.on_connect(["BTC"])
    assert coverage.advance(9_000, 10.0, idle=True) == 0  # BTC's replay is awaited
    assert coverage.advance(9_000, 10.0 + REPLAY_WAIT_S + 0.1, idle=False) == 0  # not taped
    assert coverage.advance(9_000, 10.0 + REPLAY_WAIT_S + 0.1, idle=True) == 4_000
    assert coverage.advance(3_000, 20.0, idle=True) == 4_000  # never past now, never back


def test_connected_notes_when_it_last_changed() -> None:
    coverage = Coverage(ReplayCheck(), now_ms=1)
    coverage.live = {0}
    assert not coverage.is_connected(5) and coverage.changed_ms == 1
    coverage.on_connected(0, now_s=0.0)
    assert coverage.is_connected(7) and coverage.changed_ms == 7
