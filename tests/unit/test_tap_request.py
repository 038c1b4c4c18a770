"""A tap request is checked against what the instance streams (hlstream/tap.py, pure parts).

`interval_problem` mirrors `common.timebucket.parse_interval` because hlstream.tap imports
nothing from hlstream; the table below holds the two to the same answers, word for word.
"""

from __future__ import annotations

import pytest

from hlstream.common.errors import ConfigError, HlstreamError
from hlstream.common.timebucket import parse_interval
from hlstream.tap import (
    UNKNOWN,
    ReplayError,
    Streamed,
    TapError,
    interval_problem,
    request_problem,
    requested,
)

RUNNING = Streamed(
    frozenset({"BTC", "ETH", "kPEPE", "@107"}), frozenset({"5s", "1m", "1h"}), "/srv/run"
)
CONFIGURED = Streamed(frozenset({"BTC", "ETH"}), frozenset({"30m"}))

LABELS = ["5s", "1m", "30m", "1h", "1d", "7d", " 5s", "7x", "", "5", "0s", "s5", "8d", "7s", "7m"]


@pytest.mark.parametrize("label", LABELS)
def test_interval_problem_says_what_parse_interval_says(label):
    try:
        parse_interval(label)
        expected = None
    except ConfigError as exc:
        expected = str(exc)

    assert interval_problem(label) == expected


def test_a_malformed_interval_gets_the_interval_parse_error():
    problem = request_problem([], ["7x"], RUNNING)

    assert problem == (
        "nothing can arrive: unknown interval '7x': use N followed by s, m, h or d "
        "(e.g. 5s, 1m, 30m, 1h, 1d)"
    )


def test_a_malformed_interval_is_refused_even_when_nothing_is_known():
    assert request_problem([], ["7x"], UNKNOWN) is not None


def test_an_unconfigured_interval_names_the_running_instances_intervals_in_order():
    problem = request_problem(["BTC"], ["30m"], RUNNING)

    assert problem == (
        "nothing can arrive for interval '30m': the instance running in /srv/run has "
        "intervals 5s, 1m, 1h"
    )


def test_an_unconfigured_interval_names_the_setting_when_no_instance_was_read():
    problem = request_problem([], ["5s"], CONFIGURED)

    assert problem == "nothing can arrive for interval '5s': setting intervals is 30m"


def test_a_wrong_case_coin_gets_did_you_mean():
    problem = request_problem(["KPEPE"], [], RUNNING)

    assert problem == (
        "nothing can arrive for coin 'KPEPE': did you mean kPEPE? (coin names are case-sensitive)"
    )


def test_an_unknown_coin_names_the_coins_and_a_close_one():
    assert request_problem(["BTX"], [], RUNNING) == (
        "nothing can arrive for coin 'BTX': the instance running in /srv/run has coins "
        "@107, BTC, ETH, kPEPE; did you mean BTC?"
    )
    assert request_problem(["DOGE"], [], CONFIGURED) == (
        "nothing can arrive for coin 'DOGE': setting coins is BTC, ETH"
    )


def test_a_long_coin_list_is_cut():
    many = Streamed(frozenset(f"C{i:03d}" for i in range(200)), None, "/r")

    problem = request_problem(["ZZZZZZ"], [], many)

    assert problem is not None and problem.endswith("C011, ... (200 in all)")


def test_streamed_coins_and_intervals_pass():
    assert request_problem(["BTC", "kPEPE", "@107"], ["5s", "1h"], RUNNING) is None


def test_coins_are_not_checked_when_the_list_is_unknown():
    assert request_problem(["ANYTHING"], ["1m"], UNKNOWN) is None


def test_requested_reads_coins_and_intervals_from_exact_prefixes_only():
    prefixes = [
        "trade.BTC|",
        "gap.ETH|",
        "bar.5s.kPEPE|",
        "bar.7x.",
        "late.SOL|",
        "trade.BT",  # a partial prefix names no coin
        "bar.",
        "book.XRP|",  # book coins are a setting a tap cannot see
        "status.ingest|",
    ]

    assert requested(prefixes) == (["BTC", "ETH", "kPEPE", "SOL"], ["5s", "7x"])


def test_tap_errors_share_the_project_root():
    assert issubclass(TapError, HlstreamError) and issubclass(ReplayError, TapError)
