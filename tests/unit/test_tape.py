"""Tape record format and pure helpers: round trips, quoting, day routing."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.format import (
    COLUMNS,
    HEADER,
    HEADER_V1,
    TapePosition,
    format_record,
    parse_record,
    record_day,
    segment_day,
    segment_path,
    split_by_day,
)

ODD_COINS = ["BTC", "PURR/USDC", "@107", "xyz:TSLA", "kPEPE"]
MIDNIGHT_MS = int(datetime(2024, 3, 2, tzinfo=UTC).timestamp()) * 1000  # 2024-03-02 00:00 UTC
HASH = "0x" + "ab" * 32
BUYER, SELLER = (
    "0x818b120e0b475dc79d62092a3ae0d0e31cbf2c99",
    "0x6E8BC7cd0978397b06a14af2a8c31f5daeffea79",
)


def trade(coin: str = "BTC", ts_ms: int = MIDNIGHT_MS, tid: int = 7, **kw: object) -> Trade:
    fields: dict[str, object] = {
        "side": "buy",
        "price": "63471.0",
        "size": "0.00155",
        "hash": HASH,
    }
    fields.update(kw)
    return Trade(coin=coin, ts_ms=ts_ms, tid=tid, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("coin", ODD_COINS)
def test_trade_round_trips_for_odd_coin_names(coin):
    record = trade(coin, side="sell", price="0.000012345", size="1200000")

    line = format_record(record)

    assert line.endswith("\n") and line.count("\n") == 1
    assert parse_record(line) == record


@pytest.mark.parametrize("coin", ODD_COINS)
def test_gap_round_trips_for_odd_coin_names(coin):
    record = Gap(coin, MIDNIGHT_MS - 5_000, MIDNIGHT_MS - 1, "reconnect")

    assert parse_record(format_record(record)) == record


def test_trade_line_is_the_documented_csv_row():
    line = format_record(trade("BTC", 1_700_000_000_000, 123456, users=(BUYER, SELLER)))

    assert line == f"T,BTC,1700000000000,123456,buy,63471.0,0.00155,{HASH},,,{BUYER},{SELLER}\n"


def test_trade_without_users_leaves_their_columns_empty():
    line = format_record(trade("BTC", 1_700_000_000_000, 123456))

    assert line == f"T,BTC,1700000000000,123456,buy,63471.0,0.00155,{HASH},,,,\n"
    assert parse_record(line) == trade("BTC", 1_700_000_000_000, 123456)


def test_gap_line_leaves_trade_columns_empty():
    line = format_record(Gap("ETH", 1_700_000_000_500, 1_700_000_003_000, "reconnect"))

    assert line == "G,ETH,1700000000500,,,,,,1700000003000,reconnect,,\n"


def test_header_is_the_documented_schema():
    expected = "kind,coin,ts_ms,tid,side,price,size,hash,to_ms,reason,buyer,seller\n"

    assert expected == HEADER
    assert HEADER_V1 == "kind,coin,ts_ms,tid,side,price,size,hash,to_ms,reason\n"
    assert len(set(COLUMNS)) == len(COLUMNS) == 12


def test_users_round_trip_with_their_exact_text():
    record = trade(users=(BUYER, SELLER))

    assert parse_record(format_record(record)) == record


def test_old_schema_lines_read_and_are_written_without_users():
    old = f"T,BTC,1700000000000,123456,buy,63471.0,0.00155,{HASH},,\n"
    gap = "G,ETH,1700000000500,,,,,,1700000003000,reconnect\n"
    record = trade("BTC", 1_700_000_000_000, 123456)

    assert parse_record(old, users=False) == record
    assert parse_record(gap, users=False) == Gap(
        "ETH", 1_700_000_000_500, 1_700_000_003_000, "reconnect"
    )
    assert (
        format_record(trade("BTC", 1_700_000_000_000, 123456, users=(BUYER, SELLER)), users=False)
        == old
    )
    with pytest.raises(ProtocolError):
        parse_record(old)  # a segment never mixes the two
    with pytest.raises(ProtocolError):
        parse_record(format_record(record), users=False)


@pytest.mark.parametrize(
    "users",
    [
        (BUYER, ""),
        ("", SELLER),
        (BUYER, BUYER[:-1]),
        (BUYER, BUYER + "0"),
        (BUYER, "0X" + BUYER[2:]),
        (BUYER, BUYER[:-1] + "g"),
        (BUYER, BUYER[:20] + "," + BUYER[21:]),
        (BUYER, "1x" + BUYER[2:]),
    ],
)
def test_users_that_are_not_two_addresses_are_refused_both_ways(users):
    with pytest.raises(ProtocolError):
        format_record(trade(users=users))
    line = format_record(trade()).removesuffix(",,\n") + ",".join(f'"{u}"' for u in users) + "\n"
    with pytest.raises(ProtocolError):
        parse_record(line)


def test_fields_with_commas_and_quotes_are_quoted_and_read_back_by_csv_module():
    record = trade('we"ird,coin', hash='h,"x"')

    line = format_record(record)
    row = next(csv.reader(io.StringIO(line)))

    assert row[1] == 'we"ird,coin' and row[7] == 'h,"x"'
    assert parse_record(line) == record


def test_prices_and_sizes_are_kept_verbatim_not_normalised():
    record = trade(price="100.50000", size="0.0100")

    assert parse_record(format_record(record)) == record


def test_only_plain_positive_decimals_read_back():
    good = format_record(trade(price="1.5", size="2"))
    for bad in ("1E+2", "-1", "0.00", "NaN", "1.", " 1"):
        line = good.replace(",1.5,", f",{bad},")
        with pytest.raises(ProtocolError):
            parse_record(line)


def test_line_break_in_gap_reason_becomes_space():
    line = format_record(Gap("BTC", 1, 2, "ws closed\r\nby peer"))

    assert line.count("\n") == 1
    assert parse_record(line) == Gap("BTC", 1, 2, "ws closed  by peer")


@pytest.mark.parametrize(
    "fields",
    [
        {"price": "abc"},
        {"size": "0"},
        {"price": "1" * 65},
        {"tid": 10**19},
        {"ts_ms": -(10**19)},
    ],
)
def test_format_refuses_what_parse_would_refuse(fields):
    with pytest.raises(ProtocolError):
        format_record(trade(**fields))


def test_line_break_in_trade_field_is_refused():
    with pytest.raises(ProtocolError):
        format_record(trade(hash="0x1\n0x2"))


@pytest.mark.parametrize(
    "line",
    [
        "",
        "T,BTC,1,2,buy,1.0,1.0,h,,,extra\n",
        "T,BTC,1,2,buy,1.0,1.0,h,\n",
        "X,BTC,1,2,buy,1.0,1.0,h,,\n",
        "T,,1,2,buy,1.0,1.0,h,,\n",
        "T,BTC,1.5,2,buy,1.0,1.0,h,,\n",
        "T,BTC,1,2,B,1.0,1.0,h,,\n",
        "T,BTC,1,2,buy,-1.0,1.0,h,,\n",
        "T,BTC,1,2,buy,1.0,nan,h,,\n",
        "T,BTC,1,2,buy,1.0,1.0,h,5,\n",
        "G,BTC,1,2,,,,,5,r\n",
        "G,BTC,1,,,,,,,r\n",
        'T,"BTC,1,2,buy,1.0,1.0,h,,\n',
        "T,BTC,1,2,buy,1.0,1.0,h,,\nT,BTC,1,2,buy,1.0,1.0,h,,\n",
    ],
)
def test_malformed_old_schema_record_raises_protocol_error(line):
    with pytest.raises(ProtocolError):
        parse_record(line, users=False)


@pytest.mark.parametrize(
    "line",
    [
        "T,BTC,1,2,buy,1.0,1.0,h,,,,,extra\n",
        "T,BTC,1,2,buy,1.0,1.0,h,,,\n",
        f"T,BTC,1,2,buy,1.0,1.0,h,,,{BUYER},\n",
        f"T,BTC,1,2,buy,1.0,1.0,h,,,,{SELLER}\n",
        f"T,BTC,1,2,buy,1.0,1.0,h,,,{BUYER},x\n",
        f"G,BTC,1,,,,,,2,r,{BUYER},{SELLER}\n",
        "G,BTC,1,,,,,,2,r,,x\n",
    ],
)
def test_malformed_users_columns_raise_protocol_error(line):
    with pytest.raises(ProtocolError):
        parse_record(line)


def test_parse_accepts_a_line_without_its_newline():
    line = format_record(trade())

    assert parse_record(line.rstrip("\n")) == trade()


def test_last_millisecond_of_a_day_belongs_to_that_day():
    assert segment_day(MIDNIGHT_MS - 1) == "2024-03-01"
    assert segment_day(MIDNIGHT_MS) == "2024-03-02"


def test_trade_routes_by_its_own_time_not_by_commit_time():
    late = trade(ts_ms=MIDNIGHT_MS - 1)

    assert record_day(late) == "2024-03-01"


def test_gap_spanning_midnight_splits_into_one_piece_per_day():
    gap = Gap("BTC", MIDNIGHT_MS - 1_000, MIDNIGHT_MS + 86_400_000 + 5, "outage")

    pieces = split_by_day(gap)

    assert pieces == [
        Gap("BTC", MIDNIGHT_MS - 1_000, MIDNIGHT_MS - 1, "outage"),
        Gap("BTC", MIDNIGHT_MS, MIDNIGHT_MS + 86_400_000 - 1, "outage"),
        Gap("BTC", MIDNIGHT_MS + 86_400_000, MIDNIGHT_MS + 86_400_000 + 5, "outage"),
    ]
    assert [record_day(p) for p in pieces] == ["2024-03-01", "2024-03-02", "2024-03-03"]


def test_gap_within_one_day_is_not_split():
    gap = Gap("BTC", MIDNIGHT_MS, MIDNIGHT_MS + 86_400_000 - 1, "outage")

    assert split_by_day(gap) == [gap]


def test_segment_path_uses_the_csv_coin_encoding():
    path = segment_path("/data", "PURR/USDC", "2024-03-01")

    assert path == Path("/data/tape/purr%2fusdc/2024-03-01.csv")


@pytest.mark.parametrize("day", ["2024-3-1", "../x", "2024-02-30", "2024-03-01.csv"])
def test_segment_path_refuses_a_bad_day(day):
    with pytest.raises(ValueError):
        segment_path("/data", "BTC", day)


def test_positions_order_by_coin_then_day_then_offset():
    positions = [
        TapePosition("ETH", "2024-03-01", 10),
        TapePosition("BTC", "2024-03-02", 5),
        TapePosition("BTC", "2024-03-01", 900),
        TapePosition("BTC", "2024-03-02", 1),
    ]

    assert sorted(positions) == [
        TapePosition("BTC", "2024-03-01", 900),
        TapePosition("BTC", "2024-03-02", 1),
        TapePosition("BTC", "2024-03-02", 5),
        TapePosition("ETH", "2024-03-01", 10),
    ]
