"""Shared pure helpers: interval parsing, window flooring, decimals, filenames, sequences."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hlstream.common.backoff import WeightBudget
from hlstream.common.decimals import format_decimal, parse_decimal
from hlstream.common.errors import ConfigError
from hlstream.common.filenames import check_unique_filenames, csv_filename, encode_coin
from hlstream.common.sequence import SeqEvent, SeqTracker
from hlstream.common.timebucket import (
    bucket_start,
    format_window,
    has_rest_candles,
    normalize_ts_ms,
    parse_interval,
    parse_window,
)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("5s", 5_000),
        ("1m", 60_000),
        ("30m", 1_800_000),
        ("1h", 3_600_000),
        ("4h", 14_400_000),
        ("1d", 86_400_000),
    ],
)
def test_parse_interval_accepts_units(text, ms):
    assert parse_interval(text) == ms


@pytest.mark.parametrize("text", ["", "7x", "0s", "m", "1.5m", "-1m", "1M", "7m", "8d"])
def test_parse_interval_rejects_bad_values_with_config_error(text):
    with pytest.raises(ConfigError):
        parse_interval(text)


def test_bucket_start_floors_to_window():
    assert bucket_start(1_700_000_012_345, 5_000) == 1_700_000_010_000
    assert bucket_start(1_700_000_010_000, 5_000) == 1_700_000_010_000


def test_day_windows_start_at_utc_midnight():
    start = bucket_start(1_700_000_012_345, 86_400_000)
    assert format_window(start) == "2023-11-14 00:00:00"


def test_window_format_roundtrip():
    assert format_window(1_684_699_200_000) == "2023-05-21 20:00:00"
    assert parse_window("2023-05-21 20:00:00") == 1_684_699_200_000


def test_rest_candles_only_for_exchange_intervals():
    assert has_rest_candles("1m") and has_rest_candles("1d")
    assert not has_rest_candles("5s")


@pytest.mark.parametrize(
    ("raw", "ms"),
    [
        (1_785_648_521_306, 1_785_648_521_306),
        (1_785_648_521, 1_785_648_521_000),
        ("1785648521306", 1_785_648_521_306),
        (0, None),
        (-5, None),
        (None, None),
        (True, None),
        ("abc", None),
        (float("nan"), None),
    ],
)
def test_normalize_ts_reads_seconds_and_rejects_junk(raw, ms):
    assert normalize_ts_ms(raw) == ms


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("63471.0", "63471.0"),
        ("0.001550", "0.00155"),
        ("520665683", "520665683.0"),
        ("1E+3", "1000.0"),
        ("0", "0.0"),
        ("0.00000001", "0.00000001"),
        ("12.340", "12.34"),
    ],
)
def test_format_decimal_is_exchange_style_without_exponent(value, text):
    assert format_decimal(Decimal(value)) == text


def test_decimal_sum_is_exact():
    total = sum((Decimal(x) for x in ["0.1"] * 10), Decimal(0))
    assert format_decimal(total) == "1.0"


@pytest.mark.parametrize("text", ["", "abc", "NaN", "Infinity", 5, None, "1" * 80])
def test_parse_decimal_rejects_non_numbers(text):
    assert parse_decimal(text) is None


def test_filenames_lowercase_and_encode_unsafe_characters():
    assert csv_filename("BTC", "30m") == "btc_30m_data.csv"
    assert csv_filename("kPEPE", "1m") == "kpepe_1m_data.csv"
    assert csv_filename("PURR/USDC", "1h") == "purr%2fusdc_1h_data.csv"
    assert csv_filename("@107", "5s") == "%40107_5s_data.csv"
    assert csv_filename("xyz:TSLA", "1d") == "xyz%3atsla_1d_data.csv"


@pytest.mark.parametrize("coin", ["..", "../x", "a/b", "a\x00b", "x" * 64])
def test_encoded_coin_is_one_safe_path_component(coin):
    encoded = encode_coin(coin)
    assert "/" not in encoded and "\x00" not in encoded and encoded not in {".", ".."}


def test_overlong_coin_name_is_refused():
    with pytest.raises(ConfigError):
        encode_coin("x" * 65)


def test_coins_mapping_to_one_file_are_refused():
    with pytest.raises(ConfigError, match="kPEPE"):
        check_unique_filenames(["kPEPE", "KPEPE"])


def test_sequence_tracker_reports_first_ok_loss_restart_stale():
    tracker = SeqTracker()
    assert tracker.observe("t", "a", 1) == (SeqEvent.FIRST, 0)
    assert tracker.observe("t", "a", 2) == (SeqEvent.OK, 0)
    assert tracker.observe("t", "a", 5) == (SeqEvent.LOSS, 2)
    assert tracker.observe("t", "a", 5) == (SeqEvent.STALE, 0)
    assert tracker.observe("t", "b", 1) == (SeqEvent.RESTART, 0)
    assert tracker.lost == 2


def test_weight_budget_overspent_at_time_zero_still_makes_the_next_request_wait():
    budget = WeightBudget(1200)
    budget.spend(1300, 0.0)

    assert budget.wait_s(20, 0.0) == pytest.approx(6.0)  # 120 weight short at 1200/min
    assert budget.wait_s(20, 6.0) == 0.0
