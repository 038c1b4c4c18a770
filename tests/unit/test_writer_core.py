"""Unit tests for services/writer/core.py: rows, candles, fill plans, backfill ranges."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgpack
import pytest

from hlstream.common.csvrow import Row, format_row, parse_row
from hlstream.common.errors import IntegrityError, ProtocolError
from hlstream.common.messages import (
    Bar,
    BarAck,
    Envelope,
    Inexact,
    ack_of,
    encode_message,
)
from hlstream.services.writer import core

M = 60_000
H = 3_600_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % H  # an hour boundary
FIXTURE = (
    Path(__file__).parents[1]
    / "fixtures/hyperliquid/hyperliquid-python-sdk/test_get_candles_snapshot.yaml"
)


def make_bar(start_ms: int, close: str = "10.5") -> Bar:
    return Bar("BTC", "1m", start_ms, "10.0", "11.0", "9.5", close, "1.25", 3, True, "ws")


def candle(t: int, c: str = "10.5", **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "t": t,
        "T": t + M - 1,
        "s": "BTC",
        "i": "1m",
        "o": "10.0",
        "h": "11.0",
        "l": "9.5",
        "c": c,
        "v": "2.50",
        "n": 4,
    }
    base.update(extra)
    return base


def fixture_candles() -> list[dict[str, object]]:
    text = FIXTURE.read_text()
    match = re.search(r"string: '(\[\{.*?\}\])'", text)
    assert match is not None
    data = json.loads(match.group(1))
    assert isinstance(data, list)
    return data


def test_format_row_writes_utc_window_start_and_strings_verbatim() -> None:
    line = format_row(make_bar(T0))
    assert line == "2023-11-14 22:00:00,10.0,11.0,9.5,10.5,1.25\n"


def test_parse_row_roundtrips_format_row() -> None:
    bar = make_bar(T0 + 5 * M, close="10.75")
    assert parse_row(format_row(bar)) == core.row_of(bar)


@pytest.mark.parametrize(
    "line",
    [
        "2023-11-14 22:00:00,1,2,3,4",
        "2023-11-14T22:00:00,1,2,3,4,5",
        "2023-11-14 22:00:00,1,x,3,4,5",
    ],
)
def test_parse_row_rejects_bad_lines(line: str) -> None:
    with pytest.raises(IntegrityError):
        parse_row(line)


def test_hole_before_names_the_windows_between_the_last_row_and_a_bar() -> None:
    last = core.row_of(make_bar(T0))
    assert core.hole_before(T0, None, M) is None, "a new file has no hole"
    assert core.hole_before(T0 - M, last, M) is None
    assert core.hole_before(T0 + M, last, M) is None, "the next window"
    assert core.hole_before(T0 + 3 * M, last, M) == (T0 + M, T0 + 3 * M)


def test_plan_fill_carries_previous_close_into_omitted_windows() -> None:
    last = Row(T0, "1.0", "1.0", "1.0", "7.5", "3.0")
    candles = [core.candle_to_bar(candle(T0 + 2 * M, c="9.75"), "BTC", "1m", M)]
    plan = core.plan_fill(last, M, candles, T0 + M, T0 + 4 * M, coin="BTC", interval="1m")
    assert [bar.start_ms for bar in plan] == [T0 + M, T0 + 2 * M, T0 + 3 * M]
    assert (plan[0].open, plan[0].close, plan[0].volume) == ("7.5", "7.5", "0.0")
    assert plan[1].close == "9.75"
    carried = plan[2]
    assert (carried.open, carried.high, carried.low, carried.volume) == ("9.75",) * 3 + ("0.0",)


def test_plan_fill_skips_windows_at_or_before_last_row() -> None:
    last = Row(T0 + 2 * M, "1.0", "1.0", "1.0", "7.5", "3.0")
    candles = [core.candle_to_bar(candle(T0 + k * M), "BTC", "1m", M) for k in range(5)]
    plan = core.plan_fill(last, M, candles, T0, T0 + 5 * M, coin="BTC", interval="1m")
    assert [bar.start_ms for bar in plan] == [T0 + 3 * M, T0 + 4 * M]


def test_plan_fill_on_empty_file_starts_at_first_candle() -> None:
    candles = [core.candle_to_bar(candle(T0 + 3 * M), "BTC", "1m", M)]
    plan = core.plan_fill(None, M, candles, T0, T0 + 5 * M, coin="BTC", interval="1m")
    assert [bar.start_ms for bar in plan] == [T0 + 3 * M, T0 + 4 * M]


def test_plan_fill_without_candles_carries_forward_for_seconds_intervals() -> None:
    last = Row(T0, "1", "1", "1", "2.5", "1")
    plan = core.plan_fill(last, 5000, [], T0 + 5000, T0 + 20_000, coin="BTC", interval="5s")
    assert [(b.start_ms, b.close, b.volume) for b in plan] == [
        (T0 + 5000, "2.5", "0.0"),
        (T0 + 10_000, "2.5", "0.0"),
        (T0 + 15_000, "2.5", "0.0"),
    ]


def test_backfill_range_empty_file_reaches_back_and_stops_before_current_window() -> None:
    now = T0 + 30 * M + core.REST_SETTLE_MS
    assert core.backfill_range(None, M, now, 0.5) == (T0, T0 + 30 * M)


def test_backfill_range_starts_after_last_row_and_leaves_the_unsettled_window() -> None:
    now = T0 + 30 * M + core.REST_SETTLE_MS - 1  # 29M's candle may still lack trades
    last = Row(T0 + 20 * M, "1", "1", "1", "1", "1")
    assert core.backfill_range(last, M, now, 6) == (T0 + 21 * M, T0 + 29 * M)


def test_backfill_range_none_when_up_to_date_or_disabled() -> None:
    now = T0 + 30 * M + 1
    last = Row(T0 + 29 * M, "1", "1", "1", "1", "1")
    assert core.backfill_range(last, M, now, 6) is None
    assert core.backfill_range(None, M, now, 0) is None


def test_candles_to_bars_matches_fixture_strings() -> None:
    bars = core.candles_to_bars(fixture_candles(), "kPEPE", "1h", H)
    assert len(bars) == 24
    first = bars[0]
    assert (first.start_ms, first.open, first.high, first.low, first.close, first.volume) == (
        1684699200000,
        "0.001601",
        "0.001616",
        "0.001601",
        "0.001604",
        "520665683.0",
    )
    assert bars[4].close == "0.00155"
    assert all(b.source == "rest" and b.complete for b in bars)
    assert [b.start_ms for b in bars] == [1684699200000 + k * H for k in range(24)]


def test_candles_to_bars_canonicalises_decimals() -> None:
    bar = core.candles_to_bars([candle(T0, c="10.50", v="3")], "BTC", "1m", M)[0]
    assert (bar.close, bar.volume) == ("10.5", "3.0")


@pytest.mark.parametrize(
    "bad",
    [
        candle(T0, c="abc"),
        candle(T0, c="1e5"),
        candle(T0 + 1),
        candle(T0, s="ETH"),
        candle(T0, i="5m"),
        candle(T0, c="99.0"),
        candle(T0, v="-1"),
        candle(T0, n="4"),
        {**candle(T0), "t": None},
        "not a candle",
    ],
)
def test_candles_to_bars_rejects_bad_candles(bad: object) -> None:
    with pytest.raises(ProtocolError):
        core.candles_to_bars([bad], "BTC", "1m", M)


def test_candles_to_bars_rejects_non_list() -> None:
    with pytest.raises(ProtocolError):
        core.candles_to_bars({"error": "x"}, "BTC", "1m", M)


def test_validate_bar_rejects_unaligned_and_csv_breaking_values() -> None:
    core.validate_bar(make_bar(T0), M)
    with pytest.raises(ProtocolError):
        core.validate_bar(make_bar(T0 + 1), M)
    with pytest.raises(ProtocolError):
        core.validate_bar(make_bar(T0, close="10,5"), M)


def test_writer_frames_roundtrip_and_reject_garbage() -> None:
    bar = make_bar(T0)
    payload = encode_message(Envelope("s", 1), bar)
    assert core.decode_writer_frame(b"bar", payload) == bar
    notice = Inexact("BTC", "1m", T0, T0 + 2 * M, "gap_after_close")
    notice_payload = encode_message(Envelope("s", 2), notice)
    assert core.decode_writer_frame(b"inexact", notice_payload) == notice
    assert core.notice_windows(notice, M) == [T0, T0 + M, T0 + 2 * M]
    assert ack_of(notice) == BarAck("BTC", "1m!", T0 + 2 * M)
    for frame, bad in (
        (b"bar", b"\xc1"),
        (b"bar", msgpack.packb({**msgpack.unpackb(payload), "type": "trade"})),
        (b"bar", b"\x01"),
        (b"bar", notice_payload),  # a notice under the bar frame
        (b"inexact", payload),
        (b"junk", payload),
    ):
        with pytest.raises(ProtocolError):
            core.decode_writer_frame(frame, bad)
    with pytest.raises(ProtocolError):
        core.notice_windows(Inexact("BTC", "1m", T0 + 1, T0 + M, "x"), M)


def test_candle_request_and_weight() -> None:
    body = core.candle_request("BTC", "1m", T0, T0 + 3 * M)
    assert body["req"] == {
        "coin": "BTC",
        "interval": "1m",
        "startTime": T0,
        "endTime": T0 + 3 * M - 1,
    }
    assert core.candle_weight(120) == 22
    assert core.window_count(T0, T0 + 3 * M, M) == 3
