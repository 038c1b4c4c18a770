"""hlstream/tap_nats.py's pure parts: bus topics to JetStream subjects, stream messages to
bus-shaped ones that print exactly as the local tap prints the same trade or bar."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hlstream.common.messages import Bar, Trade
from hlstream.services.relay import bars, core
from hlstream.tap import TapError, TapMessage
from hlstream.tap_nats import decode_token, encode_token, message_of, shown_url, subject_of
from hlstream.tapcmd_io import human_lines, nats_prefixes, topic_matcher

TRADE = Trade("PURR/USDC", "sell", "0.1234", "56.5", 1_700_000_000_123, 42, "0xab")


@given(st.text(min_size=1, max_size=30))
def test_token_copies_agree_with_the_relay(coin: str) -> None:
    assert encode_token(coin) == core.encode_token(coin)
    assert decode_token(core.encode_token(coin)) == coin


@pytest.mark.parametrize(
    ("prefix", "stream", "subject"),
    [
        ("trade.BTC|", "HL_TRADES", "hl.trades.BTC"),
        ("trade.PURR/USDC|", "HL_TRADES", "hl.trades.PURR%2FUSDC"),
        ("trade.", "HL_TRADES", "hl.trades.>"),
        ("gap.@107|", "HL_TRADES", "hl.gaps.%40107"),
        ("bar.1m.xyz:TSLA|", "HL_BARS", "hl.bars.1m.xyz%3ATSLA"),
        ("bar.5s.", "HL_BARS", "hl.bars.5s.>"),
        ("bar.*.BTC|", "HL_BARS", "hl.bars.*.BTC"),
        ("bar.", "HL_BARS", "hl.bars.>"),
    ],
)
def test_topics_map_to_the_relays_subjects(prefix: str, stream: str, subject: str) -> None:
    assert subject_of(prefix) == (stream, subject)


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("book.BTC|", "trade., gap. and bar. only"),
        ("trade.BT", "end a coin name"),
        ("bar.7m.BTC|", "does not divide a day"),
        ("bar.1m", "name an interval"),
    ],
)
def test_topics_jetstream_cannot_serve_are_refused(prefix: str, why: str) -> None:
    with pytest.raises(TapError, match=why):
        subject_of(prefix)


def test_cli_bars_of_a_coin_at_any_interval_ask_the_server_for_that_coin_only() -> None:
    assert nats_prefixes("bars", ["BTC"], None) == ["bar.*.BTC|"]
    assert nats_prefixes("bars", ["BTC"], "1m") == ["bar.1m.BTC|"]
    assert nats_prefixes("trades", [], None) == ["trade."]


def test_a_stream_trade_prints_as_the_bus_prints_it() -> None:
    bus = TapMessage(
        "trade.PURR/USDC|",
        {"v": 2, "type": "trades", "session": "s", "seq": 3, "coin": "PURR/USDC",
         "trades": [msgpack.unpackb(msgpack.packb({
             "coin": TRADE.coin, "side": TRADE.side, "price": TRADE.price, "size": TRADE.size,
             "ts_ms": TRADE.ts_ms, "tid": TRADE.tid, "hash": TRADE.hash}))]},
        "ok", 0,
    )  # fmt: skip
    payload = core.trade_payload(TRADE, recv_us=1_700_000_000_200_000)
    stream = message_of(core.trade_subject(TRADE.coin), payload, "replay")
    assert stream.topic == bus.topic and topic_matcher("trades", ["PURR/USDC"], None)(stream.topic)
    assert human_lines(stream) == human_lines(bus)
    assert human_lines(stream) == ["2023-11-14 22:13:20.123 PURR/USDC sell 56.5 @ 0.1234 tid=42"]


def test_a_stream_bar_prints_in_the_bus_format_without_count_and_source() -> None:
    bar = Bar("BTC", "1m", 1_700_000_040_000, "1", "3", "0.5", "2", "10.25", 7, True, "ws")
    bus = TapMessage("bar.1m.BTC|", {"v": 2, "type": "bar", **_fields(bar)}, "ok", 0)
    values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
    exact = core.bar_payload(bars.js_bar("BTC", "1m", bar.start_ms, values, True, 2))
    stream = message_of(core.bar_subject("1m", "BTC"), exact, "ok")
    assert stream.topic == bus.topic and stream.data["revision"] == 2
    assert human_lines(bus) == [
        "2023-11-14 22:14:00.000 BTC 1m O=1 H=3 L=0.5 C=2 V=10.25 n=7 complete src=ws"
    ]
    assert human_lines(stream) == [
        "2023-11-14 22:14:00.000 BTC 1m O=1 H=3 L=0.5 C=2 V=10.25 n=- complete src=-"
    ]
    inexact = core.bar_payload(bars.js_bar("BTC", "1m", bar.start_ms, values, False, 0))
    assert "PARTIAL" in human_lines(message_of(core.bar_subject("1m", "BTC"), inexact, "ok"))[0]


def test_a_gap_keeps_its_fields() -> None:
    gap = core.Gap("@107", 1, 2, "reconnect")
    message = message_of(core.gap_subject("@107"), core.gap_payload(gap), "ok")
    assert message.topic == "gap.@107|"
    assert message.data == {
        "type": "gap", "coin": "@107", "from_ms": 1, "to_ms": 2, "reason": "reconnect"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("subject", "payload"),
    [
        ("hl.trades.BTC", b"\xc1"),  # not msgpack
        ("hl.trades.BTC", msgpack.packb([1, 2])),  # not a map
        ("hl.trades.ETH", core.trade_payload(TRADE, 0)),  # the payload's coin is another
        ("hl.trades.PURR/USDC", core.trade_payload(TRADE, 0)),  # not an encoded token
        ("hl.bars.BTC", msgpack.packb({"coin": "BTC"})),  # a bar subject without interval
        ("other.trades.BTC", msgpack.packb({"coin": "BTC"})),
    ],
)
def test_malformed_stream_messages_are_refused(subject: str, payload: bytes) -> None:
    with pytest.raises((ValueError, msgpack.UnpackException)):
        message_of(subject, payload, "ok")


def test_passwords_in_urls_are_never_shown() -> None:
    shown = shown_url("nats://u:pw1@h1:4222, tls://tok2@h2:4222,nats://h3:4222")
    assert shown == "nats://***@h1:4222, tls://***@h2:4222,nats://h3:4222"


def _fields(bar: Bar) -> dict[str, object]:
    return {name: getattr(bar, name) for name in bar.__struct_fields__}
