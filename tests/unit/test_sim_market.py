"""Unit tests for the fake exchange's pure market model (sim.market)."""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from hlstream.sim import market

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hyperliquid"
HOUR_MS = 3_600_000
MIN_MS = 60_000
DECIMAL_RE = re.compile(r"^[0-9]+\.[0-9]+$")


def trade(ts_ms: int, px: str, sz: str, coin: str = "BTC") -> dict[str, Any]:
    return {
        "coin": coin,
        "side": "B",
        "px": px,
        "sz": sz,
        "time": ts_ms,
        "hash": "0x0",
        "tid": ts_ms,
        "users": [],
    }


def test_make_trade_has_the_fixture_shape() -> None:
    fixture = json.loads((FIXTURES / "quantick" / "ws_trades.json").read_text())["data"][0]
    made = market.make_trade("BTC", 1_785_648_521_306, random.Random(1), market.new_state("BTC"))
    assert list(made) == list(fixture)
    assert [type(v) for v in made.values()] == [type(v) for v in fixture.values()]
    assert re.fullmatch(r"0x[0-9a-f]{64}", made["hash"])
    assert len(made["users"]) == len(fixture["users"])
    assert all(re.fullmatch(r"0x[0-9a-f]{40}", user) for user in made["users"])
    assert made["side"] in ("B", "A") and 0 <= made["tid"] < 2**50


def test_prices_and_sizes_are_canonical_positive_decimals() -> None:
    rng = random.Random(7)
    for coin in ("BTC", "ETH", "DOGE", "@107", "UNKNOWNCOIN"):
        state = market.new_state(coin)
        for _ in range(200):
            made = market.make_trade(coin, 1, rng, state)
            for text in (made["px"], made["sz"]):
                assert DECIMAL_RE.match(text), text
                assert Decimal(text) > 0
                assert text == text.rstrip("0") or text.endswith(".0")


def test_btc_prices_look_like_mainnet() -> None:
    made = market.make_trade("BTC", 1, random.Random(3), market.new_state("BTC"))
    assert made["px"].endswith(".0") and len(made["px"]) == 7


def test_candles_omit_empty_windows_and_include_window_of_start() -> None:
    trades = [trade(10 * MIN_MS + 5, "10.0", "1.0"), trade(12 * MIN_MS + 1, "11.0", "2.0")]
    rows = market.candles(trades, "BTC", "1m", 10 * MIN_MS + 30_000, 13 * MIN_MS)
    assert [row["t"] for row in rows] == [10 * MIN_MS, 12 * MIN_MS]
    assert rows[0]["T"] == 11 * MIN_MS - 1


def test_candles_include_window_containing_end_and_respect_limit() -> None:
    trades = [trade(i * MIN_MS + 1, "1.0", "1.0") for i in range(10)]
    rows = market.candles(trades, "BTC", "1m", 0, 9 * MIN_MS + 5, limit=3)
    assert [row["t"] for row in rows] == [7 * MIN_MS, 8 * MIN_MS, 9 * MIN_MS]


def test_candle_fields_keys_order_and_ohlc() -> None:
    trades = [
        trade(5, "2.0", "0.1"),
        trade(3, "1.5", "0.2"),
        trade(5, "3.0", "0.3"),
        trade(4, "1.0", "0.4"),
        trade(1, "9.0", "1.0", coin="ETH"),
    ]
    [row] = market.candles(trades, "BTC", "1h", 0, 10)
    assert list(row) == ["t", "T", "s", "i", "o", "c", "h", "l", "v", "n"]
    assert (row["o"], row["h"], row["l"], row["c"]) == ("1.5", "3.0", "1.0", "3.0")
    assert row["v"] == "1.0" and row["n"] == 4 and row["s"] == "BTC" and row["i"] == "1h"


def test_volume_is_decimal_exact() -> None:
    trades = [trade(1, "1.0", "0.1"), trade(2, "1.0", "0.2")]
    [row] = market.candles(trades, "BTC", "1m", 0, 1)
    assert row["v"] == "0.3"


def test_volume_formatting_matches_candle_fixture_style() -> None:
    trades = [trade(1, "0.001601", "520665000", "kPEPE"), trade(2, "0.001604", "683", "kPEPE")]
    [row] = market.candles(trades, "kPEPE", "1h", 0, 1)
    assert row["v"] == "520665683.0" and "E" not in row["v"]


def test_candles_only_count_the_requested_coin() -> None:
    trades = [trade(1, "1.0", "1.0", "ETH")]
    assert market.candles(trades, "BTC", "1m", 0, 1) == []


def test_candles_empty_when_end_before_start() -> None:
    assert market.candles([trade(1, "1.0", "1.0")], "BTC", "1m", 10, 5) == []


def test_truth_rows_carry_forward_empty_windows() -> None:
    trades = [
        trade(MIN_MS + 1, "10.0", "1.0"),
        trade(MIN_MS + 2, "12.0", "2.0"),
        trade(4 * MIN_MS, "11.0", "0.5"),
    ]
    rows = market.truth_rows(trades, MIN_MS, 0, 5 * MIN_MS)
    assert rows == [
        (MIN_MS, "10.0", "12.0", "10.0", "12.0", "3.0"),
        (2 * MIN_MS, "12.0", "12.0", "12.0", "12.0", "0.0"),
        (3 * MIN_MS, "12.0", "12.0", "12.0", "12.0", "0.0"),
        (4 * MIN_MS, "11.0", "11.0", "11.0", "11.0", "0.5"),
    ]


def test_truth_rows_from_bound_keeps_previous_close() -> None:
    trades = [trade(1, "10.0", "1.0")]
    rows = market.truth_rows(trades, MIN_MS, 2 * MIN_MS, 4 * MIN_MS)
    assert rows == [
        (2 * MIN_MS, "10.0", "10.0", "10.0", "10.0", "0.0"),
        (3 * MIN_MS, "10.0", "10.0", "10.0", "10.0", "0.0"),
    ]


def test_truth_rows_agree_with_candles_on_non_empty_windows() -> None:
    rng, state = random.Random(11), market.new_state("ETH")
    trades = [market.make_trade("ETH", rng.randint(0, 30 * MIN_MS), rng, state) for _ in range(300)]
    truth = {row[0]: row[1:] for row in market.truth_rows(trades, MIN_MS, 0, 30 * MIN_MS)}
    candles = market.candles(trades, "ETH", "1m", 0, 30 * MIN_MS)
    assert candles, "no candles: the comparison below would be vacuous"
    for row in candles:
        assert truth[row["t"]] == (row["o"], row["h"], row["l"], row["c"], row["v"])


def test_poisson_mean_is_close_to_lambda() -> None:
    rng = random.Random(5)
    draws = [market.poisson(rng, 0.2) for _ in range(20_000)]
    assert abs(sum(draws) / len(draws) - 0.2) < 0.02
    assert market.poisson(rng, 0) == 0
