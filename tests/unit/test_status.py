"""common/status.py: a heartbeat survives the wire (bus body and status file) field by field."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Envelope, decode_message, encode_message
from hlstream.common.status import FeedStatus, FileStatus, StageStatus

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
    feed=FeedStatus(True, 2, 2, ("SOL",), 12.5, {"BTC": 1_700_000_000_100}, 1_700_000_000_400),
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
)


@pytest.mark.parametrize("status", [INGEST, WRITER], ids=["ingest", "writer"])
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
