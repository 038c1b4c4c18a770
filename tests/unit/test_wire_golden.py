"""The bus's bytes are pinned: each message kind, encoded, unpacks with plain msgpack into the
map recorded here (schema v2), key for key and type for type, so a tap in another language
(plain msgpack, no hlstream) cannot tell which codec wrote it; and the recorded map decodes
back to the same typed message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import msgspec
import pytest

from hlstream.common.book import Bbo, Book, BookLevel, Fill, Fills
from hlstream.common.errors import ProtocolError
from hlstream.common.messages import (
    Bar,
    BarAck,
    Decoder,
    Envelope,
    Gap,
    Inexact,
    LateTrade,
    Message,
    TapeSpan,
    Trade,
    TradeBatch,
    encode_message,
)
from hlstream.common.status import FeedStatus, FileStatus, StageStatus
from hlstream.common.status_io import read_status, status_path, write_status
from hlstream.services.ingest import replay
from hlstream.services.ingest.replay import Frame
from tests.support.wire import decode_message

T = Trade("BTC", "buy", "63471.0", "0.00155", 1_700_000_000_123, 2**50 + 7, "0xabc")
T2 = Trade("BTC", "sell", "63470.5", "12", 1_700_000_000_124, 5, "")
SPAN = TapeSpan("2023-11-14", 100, 250)
ENVELOPE = Envelope("abc", 9)

MESSAGES: dict[str, Message] = {
    "trades": TradeBatch(
        "BTC", 1_700_000_000_200, (T, T2), SPAN, 1_700_000_000_200_123, 1_700_000_000_150
    ),
    "trades_untaped": TradeBatch("ETH", 1_700_000_000_200, ()),
    "gap": Gap(
        "BTC", 1_700_000_000_000, 1_700_000_001_000, "replay_gap", TapeSpan("2023-11-14", 250, 300)
    ),
    "gap_untaped": Gap("BTC", 1_700_000_000_000, 1_700_000_001_000, "replay_gap"),
    "status_ingest": StageStatus(
        "ingest",
        1_700_000_000_500,
        42,
        "abc",
        {"trades": 7, "gaps": 1},
        feed=FeedStatus(
            True, 2, 1, ("SOL",), 12.5, {"BTC": 1_700_000_000_100}, 1_700_000_000_400, 4096
        ),
    ),
    "status_writer": StageStatus(
        "writer",
        1_700_000_000_500,
        43,
        "abc",
        {"rows_written": 3},
        files={
            "btc_5s_data.csv": FileStatus("BTC", "5s", 1_700_000_000_000),
            "eth_5s_data.csv": FileStatus("ETH", "5s", None),
        },
        refused={"XYZ 5s": "foreign header"},
    ),
    "status_aggregator": StageStatus("aggregator", 1_700_000_000_500, 44, "abc", {}),
    "bar": Bar(
        "BTC", "5s", 1_700_000_000_000, "10.0", "11.5", "9.0", "10.5", "3.25", 4, False, "ws"
    ),
    "late": LateTrade("5s", 1_699_999_995_000, T),
    "ack": BarAck("BTC", "5s!", 1_700_000_000_000),
    "book": Book(
        "BTC",
        1_700_000_000_000,
        1_700_000_000_003,
        (BookLevel("63451.0", "19.98344", 35),),
        (BookLevel("63452.0", "5.3", 14), BookLevel("63453.0", "1", 1)),
    ),
    "bbo": Bbo("ETH", 1_700_000_000_000, 1_700_000_000_003, None, BookLevel("1.5", "2", 1)),
    "fills": Fills(
        "0xabc",
        True,
        1_700_000_000_003,
        (
            Fill(
                "BTC",
                "sell",
                "63000.0",
                "0.1",
                1_700_000_000_000,
                7,
                42,
                "0xh",
                "0.1",
                "USDC",
                "12.5",
                "Close Long",
                True,
                "0.5",
            ),
        ),
    ),
    "inexact": Inexact("BTC", "5s", 1_700_000_000_000, 1_700_000_010_000, "gap_after_close"),
}

# Recorded from the schema-v2 codec of release 0.x (hand-written maps, msgpack-python).
GOLDEN: dict[str, dict[str, Any]] = {
    "trades": {
        "v": 2,
        "type": "trades",
        "session": "abc",
        "seq": 9,
        "coin": "BTC",
        "recv_ms": 1700000000200,
        "trades": [
            {
                "coin": "BTC",
                "side": "buy",
                "price": "63471.0",
                "size": "0.00155",
                "ts_ms": 1700000000123,
                "tid": 1125899906842631,
                "hash": "0xabc",
            },
            {
                "coin": "BTC",
                "side": "sell",
                "price": "63470.5",
                "size": "12",
                "ts_ms": 1700000000124,
                "tid": 5,
                "hash": "",
            },
        ],
        "recv_us": 1700000000200123,
        "covered_ms": 1700000000150,
        "tape": ["2023-11-14", 100, 250],
    },
    "trades_untaped": {
        "v": 2,
        "type": "trades",
        "session": "abc",
        "seq": 9,
        "coin": "ETH",
        "recv_ms": 1700000000200,
        "trades": [],
        "recv_us": 0,
        "covered_ms": 0,
        "tape": None,
    },
    "gap": {
        "v": 2,
        "type": "gap",
        "session": "abc",
        "seq": 9,
        "coin": "BTC",
        "from_ms": 1700000000000,
        "to_ms": 1700000001000,
        "reason": "replay_gap",
        "tape": ["2023-11-14", 250, 300],
    },
    "gap_untaped": {
        "v": 2,
        "type": "gap",
        "session": "abc",
        "seq": 9,
        "coin": "BTC",
        "from_ms": 1700000000000,
        "to_ms": 1700000001000,
        "reason": "replay_gap",
    },
    "status_ingest": {
        "v": 2,
        "type": "status",
        "session": "abc",
        "seq": 9,
        "service": "ingest",
        "ts_ms": 1700000000500,
        "pid": 42,
        "counters": {"trades": 7, "gaps": 1},
        "feed": {
            "connected": True,
            "links": 2,
            "links_up": 1,
            "delisted": ["SOL"],
            "msgs_per_s": 12.5,
            "last_trade_ms": {"BTC": 1700000000100},
            "covered_ms": 1700000000400,
            "backlog_bytes": 4096,
            "connected_since_ms": None,
            "disconnected_since_ms": None,
            "activity": {},
        },
        "files": {},
        "refused": {},
        "rest": None,
    },
    "status_writer": {
        "v": 2,
        "type": "status",
        "session": "abc",
        "seq": 9,
        "service": "writer",
        "ts_ms": 1700000000500,
        "pid": 43,
        "counters": {"rows_written": 3},
        "feed": None,
        "files": {
            "btc_5s_data.csv": {"coin": "BTC", "interval": "5s", "last_start_ms": 1700000000000},
            "eth_5s_data.csv": {"coin": "ETH", "interval": "5s", "last_start_ms": None},
        },
        "refused": {"XYZ 5s": "foreign header"},
        "rest": None,
    },
    "status_aggregator": {
        "v": 2,
        "type": "status",
        "session": "abc",
        "seq": 9,
        "service": "aggregator",
        "ts_ms": 1700000000500,
        "pid": 44,
        "counters": {},
        "feed": None,
        "files": {},
        "refused": {},
        "rest": None,
    },
    "bar": {
        "v": 2,
        "type": "bar",
        "session": "abc",
        "seq": 9,
        "coin": "BTC",
        "interval": "5s",
        "start_ms": 1700000000000,
        "open": "10.0",
        "high": "11.5",
        "low": "9.0",
        "close": "10.5",
        "volume": "3.25",
        "trades": 4,
        "complete": False,
        "source": "ws",
    },
    "late": {
        "v": 2,
        "type": "late",
        "session": "abc",
        "seq": 9,
        "interval": "5s",
        "start_ms": 1699999995000,
        "trade": {
            "coin": "BTC",
            "side": "buy",
            "price": "63471.0",
            "size": "0.00155",
            "ts_ms": 1700000000123,
            "tid": 1125899906842631,
            "hash": "0xabc",
        },
    },
    "ack": {
        "v": 2,
        "type": "ack",
        "session": "abc",
        "seq": 9,
        "coin": "BTC",
        "interval": "5s!",
        "start_ms": 1700000000000,
    },
    "book": {
        "v": 2,
        "type": "book",
        "session": "abc",
        "seq": 9,
        "coin": "BTC",
        "ts_ms": 1700000000000,
        "recv_ms": 1700000000003,
        "bids": [{"price": "63451.0", "size": "19.98344", "orders": 35}],
        "asks": [
            {"price": "63452.0", "size": "5.3", "orders": 14},
            {"price": "63453.0", "size": "1", "orders": 1},
        ],
    },
    "bbo": {
        "v": 2,
        "type": "bbo",
        "session": "abc",
        "seq": 9,
        "coin": "ETH",
        "ts_ms": 1700000000000,
        "recv_ms": 1700000000003,
        "bid": None,
        "ask": {"price": "1.5", "size": "2", "orders": 1},
    },
    "fills": {
        "v": 2,
        "type": "fills",
        "session": "abc",
        "seq": 9,
        "user": "0xabc",
        "is_snapshot": True,
        "recv_ms": 1700000000003,
        "fills": [
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
        ],
    },
    "inexact": {
        "v": 2,
        "type": "inexact",
        "session": "abc",
        "seq": 9,
        "coin": "BTC",
        "interval": "5s",
        "first_ms": 1700000000000,
        "last_ms": 1700000010000,
        "reason": "gap_after_close",
    },
}


def typed(value: Any) -> Any:
    """`value` with every leaf tagged by its type, so True != 1 and 12.0 != 12 compare unequal."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_each_kind_encodes_to_the_recorded_map(name: str) -> None:
    payload = encode_message(ENVELOPE, MESSAGES[name])

    assert typed(msgpack.unpackb(payload, raw=False)) == typed(GOLDEN[name])


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_the_recorded_map_decodes_to_the_message(name: str) -> None:
    payload = msgpack.packb(GOLDEN[name], use_bin_type=True)

    assert decode_message(payload) == (ENVELOPE, MESSAGES[name])


def test_every_kind_is_recorded() -> None:
    kinds = {golden["type"] for golden in GOLDEN.values()}

    assert kinds == {
        "trades",
        "gap",
        "status",
        "bar",
        "late",
        "ack",
        "book",
        "bbo",
        "fills",
        "inexact",
    }


STATUS_FILES = {
    "status_ingest": '{"counters": {"gaps": 1, "trades": 7}, "feed": {"activity": {}, '
    '"backlog_bytes": 4096, "connected": true, "connected_since_ms": null, "covered_ms": '
    '1700000000400, "delisted": ["SOL"], "disconnected_since_ms": null, "last_trade_ms": '
    '{"BTC": 1700000000100}, "links": 2, "links_up": 1, "msgs_per_s": 12.5}, "files": {}, '
    '"pid": 42, "refused": {}, "rest": null, "service": "ingest", "session": "abc", '
    '"ts_ms": 1700000000500}',
    "status_writer": '{"counters": {"rows_written": 3}, "feed": null, "files": '
    '{"btc_5s_data.csv": {"coin": "BTC", "interval": "5s", "last_start_ms": 1700000000000}, '
    '"eth_5s_data.csv": {"coin": "ETH", "interval": "5s", "last_start_ms": null}}, "pid": 43, '
    '"refused": {"XYZ 5s": "foreign header"}, "rest": null, "service": "writer", '
    '"session": "abc", "ts_ms": 1700000000500}',
}


@pytest.mark.parametrize("name", sorted(STATUS_FILES))
def test_status_files_keep_their_recorded_text(name: str, tmp_path: Path) -> None:
    status = MESSAGES[name]
    assert isinstance(status, StageStatus)

    write_status(tmp_path, status)

    assert status_path(tmp_path, status.service).read_text() == STATUS_FILES[name]
    assert read_status(tmp_path, status.service) == status


REPLAY_FRAMES: list[tuple[Frame, dict[str, Any]]] = [
    (
        replay.ReplayRequest(v=2, coin="BTC", since_ms=1_700_000_000_000),
        {"v": 2, "type": "replay", "coin": "BTC", "since_ms": 1700000000000},
    ),
    (
        replay.ReplayTrades(coin="BTC", trades=[T2]),
        {"v": 2, "type": "replay_trades", "coin": "BTC", "trades": [GOLDEN["trades"]["trades"][1]]},
    ),
    (
        replay.ReplayGap(coin="BTC", from_ms=1, to_ms=2, reason="gap"),
        {
            "v": 2,
            "type": "replay_gap",
            "coin": "BTC",
            "from_ms": 1,
            "to_ms": 2,
            "reason": "gap",
        },
    ),
    (
        replay.ReplayEnd(coin="BTC", trades=3, tape={"2023-11-14": 250}),
        {"v": 2, "type": "replay_end", "coin": "BTC", "trades": 3, "tape": {"2023-11-14": 250}},
    ),
    (replay.ReplayError(error="no"), {"v": 2, "type": "replay_error", "error": "no"}),
]


@pytest.mark.parametrize(("frame", "golden"), REPLAY_FRAMES)
def test_replay_frames_keep_their_recorded_maps(frame: Frame, golden: dict[str, Any]) -> None:
    assert typed(msgpack.unpackb(replay.ENCODER.encode(frame), raw=False)) == typed(golden)


def test_a_replay_request_is_read_and_anything_else_refused() -> None:
    golden = REPLAY_FRAMES[0][1]
    now_ms = 1_700_000_000_001

    assert replay.parse_request(msgpack.packb(golden), ("BTC",), now_ms) == REPLAY_FRAMES[0][0]
    for bad in (
        {**golden, "v": 1},
        {key: value for key, value in golden.items() if key != "type"},
        {key: value for key, value in golden.items() if key != "v"},
        {**golden, "since_ms": -1},
        {**golden, "since_ms": now_ms + 1},
        {**golden, "coin": "ETH"},
        REPLAY_FRAMES[4][1],
    ):
        with pytest.raises(ProtocolError):
            replay.parse_request(msgpack.packb(bad), ("BTC",), now_ms)


def test_a_decoder_of_one_type_still_needs_the_type() -> None:
    acks = Decoder((BarAck,))
    golden = GOLDEN["ack"]

    assert acks.decode(msgpack.packb(golden)) == (ENVELOPE, MESSAGES["ack"])
    for bad in ({**golden, "type": ""}, {**golden, "type": "bar"}, {**golden, "type": None}):
        with pytest.raises(ProtocolError):
            acks.decode(msgpack.packb(bad))
    with pytest.raises(ProtocolError):
        acks.decode(msgpack.packb({key: value for key, value in golden.items() if key != "type"}))


# Bytes of the codec before trades had `users`: a trade without them must stay byte for byte.
TRADES_BYTES = bytes.fromhex(
    "8aa474797065a6747261646573a17602a773657373696f6ea3616263a373657109a4636f696ea3425443"
    "a7726563765f6d73cf0000018bcfe568c8a67472616465739287a4636f696ea3425443a473696465a362"
    "7579a57072696365a736333437312e30a473697a65a7302e3030313535a574735f6d73cf0000018bcfe5"
    "687ba3746964cf0004000000000007a468617368a5307861626387a4636f696ea3425443a473696465a4"
    "73656c6ca57072696365a736333437302e35a473697a65a23132a574735f6d73cf0000018bcfe5687ca3"
    "74696405a468617368a0a47461706593aa323032332d31312d313464ccfaa7726563765f7573cf00060a"
    "2418214dbbaa636f76657265645f6d73cf0000018bcfe56896"
)
LATE_BYTES = bytes.fromhex(
    "87a474797065a46c617465a17602a773657373696f6ea3616263a373657109a8696e74657276616ca235"
    "73a873746172745f6d73cf0000018bcfe55478a5747261646587a4636f696ea3425443a473696465a362"
    "7579a57072696365a736333437312e30a473697a65a7302e3030313535a574735f6d73cf0000018bcfe5"
    "687ba3746964cf0004000000000007a468617368a53078616263"
)
BUYER = "0x818b120e0b475dc79d62092a3ae0d0e31cbf2c99"
SELLER = "0x6E8BC7CD0978397b06a14af2a8c31f5daeffea79"


def test_a_trade_without_users_keeps_its_bytes() -> None:
    assert encode_message(ENVELOPE, MESSAGES["trades"]) == TRADES_BYTES
    assert encode_message(ENVELOPE, MESSAGES["late"]) == LATE_BYTES


def test_users_are_one_more_key_of_the_trade_map_and_read_back() -> None:
    batch = TradeBatch(
        "BTC", 1_700_000_000_200, (msgspec.structs.replace(T, users=(BUYER, SELLER)),)
    )
    payload = encode_message(ENVELOPE, batch)

    (wire,) = msgpack.unpackb(payload, raw=False)["trades"]
    assert wire == {**GOLDEN["trades"]["trades"][0], "users": [BUYER, SELLER]}
    assert decode_message(payload) == (ENVELOPE, batch)


@pytest.mark.parametrize(
    "users",
    [
        [BUYER],
        [BUYER, SELLER, BUYER],
        [BUYER, 1],
        [BUYER, SELLER[:-1]],
        [BUYER, "0x" + "g" * 40],
        "x",
    ],
)
def test_users_that_are_not_two_addresses_are_refused_on_the_bus(users: Any) -> None:
    golden = GOLDEN["trades"]
    trade = {**golden["trades"][0], "users": users}
    payload = msgpack.packb({**golden, "trades": [trade]}, use_bin_type=True)

    with pytest.raises(ProtocolError):
        decode_message(payload)
