"""common/tapcmd_io.py: tap subscriptions are exact per coin (ETH never shows ETHFI)."""

from __future__ import annotations

from hlstream.tap import TapMessage
from hlstream.tapcmd_io import human_lines, json_line, subscriptions, topic_matcher


def test_coin_subscriptions_end_with_the_terminator() -> None:
    assert subscriptions("trades", ["ETH"], None) == ["trade.ETH|"]
    assert subscriptions("book", ["BTC"], None) == ["book.BTC|"]
    assert subscriptions("trades", [], None) == ["trade."]


def test_bar_subscriptions_with_and_without_interval() -> None:
    assert subscriptions("bars", ["ETH"], "5s") == ["bar.5s.ETH|"]
    assert subscriptions("bars", [], "5s") == ["bar.5s."]
    assert subscriptions("bars", ["ETH"], None) == ["bar."]


def test_matcher_is_exact_on_coin() -> None:
    matches = topic_matcher("trades", ["ETH"], None)
    assert matches("trade.ETH|")
    assert not matches("trade.ETHFI|")


def test_bar_matcher_filters_coin_across_intervals() -> None:
    matches = topic_matcher("bars", ["ETH"], None)
    assert matches("bar.5s.ETH|") and matches("bar.1m.ETH|")
    assert not matches("bar.5s.ETHFI|")
    assert not topic_matcher("bars", [], "1m")("bar.5s.ETH|")


def test_trade_batch_prints_one_line_per_trade() -> None:
    trade = {
        "coin": "BTC",
        "side": "buy",
        "price": "1.5",
        "size": "2",
        "ts_ms": 1_700_000_000_123,
        "tid": 7,
        "hash": "0x",
    }
    message = TapMessage(
        "trade.BTC|",
        {"v": 1, "type": "trades", "session": "s", "seq": 1, "trades": [trade, trade]},
        "ok",
        0,
    )
    lines = human_lines(message)
    assert len(lines) == 2
    assert lines[0] == "2023-11-14 22:13:20.123 BTC buy  2 @ 1.5 tid=7"


def test_a_trade_with_users_prints_buyer_and_seller() -> None:
    trade = {"coin": "BTC", "side": "sell", "price": "1.5", "size": "2", "ts_ms": 1_700_000_000_123}
    trade |= {"tid": 7, "hash": "0x", "users": ["0x" + "a" * 40, "0x" + "b" * 40]}
    message = TapMessage("trade.BTC|", {"type": "trades", "trades": [trade]}, "ok", 0)

    assert human_lines(message) == [
        f"2023-11-14 22:13:20.123 BTC sell 2 @ 1.5 tid=7 buyer=0x{'a' * 40} seller=0x{'b' * 40}"
    ]


def test_lost_messages_are_flagged() -> None:
    message = TapMessage(
        "status.ingest|",
        {"v": 1, "type": "status", "session": "s", "seq": 9, "connected": True},
        "loss",
        3,
    )
    assert human_lines(message)[0] == "# status.ingest| lost 3 message(s)"
    assert '"lost":3' in json_line(message) and '"topic":"status.ingest|"' in json_line(message)


def test_cli_offers_every_tap_kind() -> None:
    from hlstream.cli import build_parser
    from hlstream.tapcmd_io import KINDS

    assert KINDS
    for kind in KINDS:
        assert build_parser().parse_args(["tap", kind]).kind == kind


def test_book_prints_best_levels() -> None:
    data = {
        "v": 1,
        "type": "book",
        "session": "s",
        "seq": 1,
        "coin": "BTC",
        "ts_ms": 1_700_000_000_000,
        "recv_ms": 1,
        "bids": [{"price": "99", "size": "1", "orders": 2}],
        "asks": [
            {"price": "101", "size": "3", "orders": 1},
            {"price": "102", "size": "1", "orders": 1},
        ],
    }
    line = human_lines(TapMessage("book.BTC|", data, "ok", 0))[0]
    assert line == "2023-11-14 22:13:20.000 BTC book bid 1@99 ask 3@101 (1x2 levels)"
