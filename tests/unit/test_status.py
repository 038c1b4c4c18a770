"""common/status.py: a heartbeat survives the wire (bus body and status file) field by field."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Envelope, Trade, encode_message
from hlstream.common.status import (
    FeedStatus,
    FileStatus,
    RestStatus,
    RestTracker,
    StageStatus,
    TradeActivity,
)
from hlstream.services.ingest.core.dedupe import Deduper
from tests.support.wire import decode_message

READ = msgspec.json.Decoder(StageStatus)


def to_wire(status: StageStatus) -> dict[str, Any]:
    """The status map as the JSON file holds it."""
    wire: dict[str, Any] = json.loads(json.dumps(msgspec.to_builtins(status)))
    return wire


def from_wire(wire: dict[str, Any]) -> StageStatus:
    try:
        return READ.decode(json.dumps(wire))
    except msgspec.ValidationError as exc:
        raise ProtocolError(str(exc)) from None


INGEST = StageStatus(
    "ingest",
    1_700_000_000_500,
    42,
    "abc",
    {"trades": 7, "gaps": 1},
    feed=FeedStatus(
        True,
        2,
        2,
        ("SOL",),
        12.5,
        {"BTC": 1_700_000_000_100},
        1_700_000_000_400,
        connected_since_ms=1_699_999_000_000,
        activity={"BTC": TradeActivity(40, 900_000)},
    ),
    rest=RestStatus(last_ok_ms=1_699_999_999_000),
)
OFFLINE = StageStatus(
    "ingest",
    1_700_000_000_500,
    42,
    "abc",
    {},
    feed=FeedStatus(False, 1, 0, (), 0.0, {}, 0, disconnected_since_ms=1_699_999_000_000),
    rest=RestStatus(1_699_999_990_000, 3, "unreachable: ConnectionError", None),
)
WRITER = StageStatus(
    "writer",
    1_700_000_000_500,
    43,
    "def",
    {"rows_written": 3},
    files={
        "btc_5s_data.csv": FileStatus("BTC", "5s", 1_700_000_000_000),
        "eth_5s_data.csv": FileStatus("ETH", "5s", None),
    },
    refused={"XYZ 5s": "foreign header"},
    rest=RestStatus(1_700_000_000_000, 7, "HTTP 500", 1_699_999_000_000),
)


@pytest.mark.parametrize("status", [INGEST, OFFLINE, WRITER], ids=["ingest", "offline", "writer"])
def test_status_round_trips_through_the_bus_and_the_json_file(status: StageStatus) -> None:
    _, on_bus = decode_message(encode_message(Envelope("s", 1), status))
    in_file = from_wire(to_wire(status))

    assert on_bus == status
    assert in_file == status


def test_feed_fields_are_read_not_defaulted() -> None:
    wire = to_wire(INGEST)
    assert wire["feed"]["covered_ms"] == 1_700_000_000_400
    del wire["feed"]["covered_ms"]
    with pytest.raises(ProtocolError):
        from_wire(wire)


def test_a_counter_that_is_not_an_integer_is_refused() -> None:
    wire = to_wire(INGEST)
    wire["counters"]["trades"] = "7"
    with pytest.raises(ProtocolError):
        from_wire(wire)


def test_a_heartbeat_without_the_health_fields_reads_as_unknown() -> None:
    wire = to_wire(INGEST)
    for key in ("connected_since_ms", "disconnected_since_ms", "activity"):
        del wire["feed"][key]
    del wire["rest"]

    status = from_wire(wire)

    assert status.feed is not None and status.rest is None
    assert (status.feed.connected_since_ms, status.feed.activity) == (None, {})


def test_malformed_health_fields_are_refused() -> None:
    for path, value in (
        (("feed", "activity"), {"BTC": {"times": "40", "span_ms": 1}}),
        (("feed", "connected_since_ms"), 1.5),
        (("rest",), {"failing_since_ms": None, "failures": "1"}),
        (("rest",), "down"),
    ):
        wire = to_wire(INGEST)
        target = wire
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(ProtocolError):
            from_wire(wire)


def test_rest_tracker_keeps_the_start_of_a_failure_run_until_a_success() -> None:
    tracker = RestTracker()
    tracker.failed(1_000, "timed out")
    tracker.failed(5_000, "HTTP 502")
    assert tracker.status() == RestStatus(1_000, 2, "HTTP 502", None)

    tracker.succeeded(9_000)
    tracker.failed(12_000, "unreachable")
    assert tracker.status() == RestStatus(12_000, 1, "unreachable", 9_000)


def make_trade(ts_ms: int, tid: int) -> Trade:
    return Trade("BTC", "buy", "1.0", "2.0", ts_ms, tid, "")


def test_ingest_reports_distinct_trade_times_and_their_span_per_coin() -> None:
    deduper = Deduper()
    # Three fills of one order share a time: one trade time, not three.
    deduper.admit([make_trade(ts_ms=1_000, tid=t) for t in (1, 2, 3)])
    deduper.admit([make_trade(ts_ms=31_000, tid=4), make_trade(ts_ms=61_000, tid=5)])

    assert deduper.activity_by_coin() == {"BTC": TradeActivity(3, 60_000)}
