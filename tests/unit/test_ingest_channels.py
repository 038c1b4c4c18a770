"""Unit tests for services/ingest/channels.py: subscription plan, sharding, error-frame
correlation, early-close detection and the optional-channel normalisers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hlstream.common.errors import ConfigError, ProtocolError
from hlstream.services.ingest.channels import (
    BBO,
    L2BOOK,
    TRADES,
    USER_FILLS,
    RequestLog,
    Sub,
    is_already_subscribed,
    is_early_close,
    parse_bbo,
    parse_book,
    parse_fills,
    plan_subscriptions,
    shard,
    unlisted_coins,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hyperliquid"
ADDRESS = "0x" + "ab" * 20


# ---- plan and shard ------------------------------------------------------------------------


def test_plan_lists_trades_then_book_bbo_fills_once_each() -> None:
    subs = plan_subscriptions(["BTC", "ETH"], ["BTC"], ["ETH"], [ADDRESS.upper().replace("X", "x")])

    assert subs == [
        Sub(TRADES, "BTC"),
        Sub(TRADES, "ETH"),
        Sub(L2BOOK, "BTC"),
        Sub(BBO, "ETH"),
        Sub(USER_FILLS, ADDRESS),
    ]


def test_subscription_messages_use_coin_or_user() -> None:
    assert json.loads(Sub(L2BOOK, "kPEPE").message()) == {
        "method": "subscribe",
        "subscription": {"type": "l2Book", "coin": "kPEPE"},
    }
    assert json.loads(Sub(USER_FILLS, ADDRESS).message())["subscription"] == {
        "type": "userFills",
        "user": ADDRESS,
    }
    assert Sub(USER_FILLS, ADDRESS).coin is None


def test_five_subscriptions_at_two_per_connection_use_three_connections() -> None:
    subs = [Sub(TRADES, coin) for coin in "ABCDE"]

    shards = shard(subs, per_connection=2)

    assert [len(s) for s in shards] == [2, 2, 1]
    assert [sub for s in shards for sub in s] == subs


def test_shards_are_filled_evenly_not_greedily() -> None:
    subs = [Sub(TRADES, f"C{i}") for i in range(250)]

    assert [len(s) for s in shard(subs, per_connection=200)] == [125, 125]


def test_plan_beyond_venue_limits_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="1000"):
        shard([Sub(TRADES, f"C{i}") for i in range(1001)], per_connection=200)
    with pytest.raises(ConfigError, match="raise ws_subscriptions_per_connection"):
        shard([Sub(TRADES, f"C{i}") for i in range(11)], per_connection=1)


def test_unlisted_coins_ignores_user_channels_and_repeats() -> None:
    subs = [Sub(TRADES, "BTC"), Sub(TRADES, "OLD"), Sub(L2BOOK, "OLD"), Sub(USER_FILLS, ADDRESS)]

    assert unlisted_coins(subs, {"BTC"}) == ["OLD"]


@pytest.mark.parametrize(
    ("closed_s", "last_subscribe_s", "early"),
    [(101.0, 100.0, True), (105.0, 100.0, True), (106.0, 100.0, False), (101.0, None, False)],
)
def test_early_close_is_a_close_soon_after_the_last_subscribe(
    closed_s: float, last_subscribe_s: float | None, early: bool
) -> None:
    assert is_early_close(closed_s, last_subscribe_s, window_s=5.0) is early


# ---- error frames --------------------------------------------------------------------------


def test_error_names_the_subscription_it_quotes_not_the_newest_request() -> None:
    log = RequestLog()
    btc, eth, ethfi = (Sub(TRADES, c).message() for c in ("BTC", "ETH", "ETHFI"))
    log.record(10.0, btc)
    log.record(10.1, eth)
    log.record(10.2, ethfi)

    cause = log.cause_of('Already subscribed: {"coin":"ETH","type":"trades"}', 10.3)

    assert cause == (eth, True)


def test_parse_error_quoting_the_request_text_is_matched_exactly() -> None:
    log = RequestLog()
    request = Sub(USER_FILLS, ADDRESS).message()
    log.record(1.0, request)
    log.record(1.1, '{"method":"ping"}')

    cause = log.cause_of(f"Error parsing JSON into valid websocket request: {request}", 1.2)

    assert cause == (request, True)


def test_unmatched_error_guesses_the_newest_recent_request_or_gives_up() -> None:
    log = RequestLog()
    log.record(1.0, Sub(TRADES, "BTC").message())

    assert log.cause_of("Internal error", 2.0) == (Sub(TRADES, "BTC").message(), False)
    assert log.cause_of("Internal error", 20.0) is None


def test_requests_are_forgotten_after_the_memory_window() -> None:
    log = RequestLog()  # remembers 30 s
    log.record(0.0, Sub(TRADES, "BTC").message())
    log.record(31.0, Sub(TRADES, "ETH").message())

    assert log.cause_of('Already subscribed: {"coin":"BTC","type":"trades"}', 31.0) == (
        Sub(TRADES, "ETH").message(),
        False,
    )


def test_already_subscribed_is_recognised_as_harmless() -> None:
    assert is_already_subscribed('Already subscribed: {"coin":"BTC","type":"trades"}')
    assert not is_already_subscribed("Invalid subscription")


def as_map(message: object) -> Any:
    """The message's map as a subscriber unpacks it."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(message))


# ---- optional channels ---------------------------------------------------------------------


def test_book_fixture_is_normalised_to_price_size_orders_levels() -> None:
    data = json.loads((FIXTURES / "quantick" / "ws_l2_book.json").read_text())["data"]

    body = as_map(parse_book(data, recv_ms=5))

    assert body["coin"] == "BTC" and body["ts_ms"] == 1785648733832
    assert body["bids"][0] == {"price": "63451.0", "size": "19.98344", "orders": 35}
    assert body["asks"][0] == {"price": "63452.0", "size": "5.32012", "orders": 14}
    assert len(body["bids"]) == len(body["asks"]) == 3


def test_bbo_with_an_empty_side_keeps_it_as_none() -> None:
    data = {"coin": "ETH", "time": 1700000000000, "bbo": [None, {"px": "1.5", "sz": "2", "n": 1}]}

    assert as_map(parse_bbo(data, recv_ms=5)) == {
        "coin": "ETH",
        "ts_ms": 1700000000000,
        "recv_ms": 5,
        "bid": None,
        "ask": {"price": "1.5", "size": "2", "orders": 1},
    }


def test_user_fills_are_normalised_with_lowercase_user() -> None:
    fill = {
        "coin": "BTC",
        "px": "63000.0",
        "sz": "0.1",
        "side": "A",
        "time": 1700000000000,
        "startPosition": "0.5",
        "dir": "Close Long",
        "closedPnl": "12.5",
        "hash": "0xh",
        "oid": 42,
        "crossed": True,
        "fee": "0.1",
        "tid": 7,
        "feeToken": "USDC",
    }
    data = {"isSnapshot": True, "user": ADDRESS.upper().replace("X", "x"), "fills": [fill]}

    body = as_map(parse_fills(data, recv_ms=5))

    assert body["user"] == ADDRESS and body["is_snapshot"] is True
    assert body["fills"] == [
        {
            "coin": "BTC",
            "side": "sell",
            "price": "63000.0",
            "size": "0.1",
            "ts_ms": 1700000000000,
            "tid": 7,
            "oid": 42,
            "hash": "0xh",
            "fee": "0.1",
            "fee_token": "USDC",
            "closed_pnl": "12.5",
            "dir": "Close Long",
            "crossed": True,
            "start_position": "0.5",
        }
    ]


@pytest.mark.parametrize(
    ("normalise", "data"),
    [
        (parse_book, {"coin": "BTC", "time": 1, "levels": [[]]}),
        (parse_book, {"coin": "BTC", "time": 1, "levels": [[{"px": 1, "sz": "1", "n": 1}], []]}),
        (parse_book, {"coin": "BTC", "levels": [[], []]}),
        (parse_bbo, {"coin": "BTC", "time": 1, "bbo": "x"}),
        (parse_fills, {"user": ADDRESS, "fills": [{"coin": "BTC", "side": "X"}]}),
        (parse_fills, ["not", "a", "map"]),
    ],
)
def test_malformed_channel_payload_raises_protocol_error(normalise: object, data: object) -> None:
    with pytest.raises(ProtocolError):
        normalise(data, 0)  # type: ignore[operator]
