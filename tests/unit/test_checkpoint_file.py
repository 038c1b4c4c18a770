"""The aggregator's checkpoint file keeps its recorded map (version 1), so a checkpoint
written before an upgrade restores after it, and one that is wrong anywhere is refused."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Inexact, Trade
from hlstream.services.aggregator.checkpoint import decode_checkpoint, encode_checkpoint
from hlstream.services.aggregator.core import AggState, advance, apply_trades, new_state, taint

T0 = 1_700_000_040_000
CONSUMED = {("BTC", "2023-11-14"): 123}

# Recorded from the hand-written checkpoint codec this Struct replaced.
GOLDEN: dict[str, Any] = {
    "v": 1,
    "covered_ms": 1700000047000,
    "grace_ms": 2000,
    "joined_ms": 1700000039999,
    "joined_by_coin": {"BTC": 1700000039995},
    "late_trades": 0,
    "applied_trades": 3,
    "taints": {"ETH": [[1700000040000, 1700000041000]]},
    "series": [
        {
            "coin": "BTC",
            "interval": "5s",
            "interval_ms": 5000,
            "next_start": 1700000045000,
            "last_close": "9.75",
            "closed_through": 1700000045000,
            "open": [[1700000045000, "11", "11", "11", "11", 1700000047200, 1700000047200, "2", 1]],
            "seed_ts": None,
        },
        {
            "coin": "ETH",
            "interval": "5s",
            "interval_ms": 5000,
            "next_start": None,
            "last_close": None,
            "closed_through": 1700000045000,
            "open": [],
            "seed_ts": None,
        },
    ],
    "consumed": [["BTC", "2023-11-14", 123]],
    "pending": [
        {
            "coin": "BTC",
            "interval": "5s",
            "start_ms": 1700000040000,
            "open": "10.5",
            "high": "10.5",
            "low": "9.75",
            "close": "9.75",
            "volume": "1.25",
            "trades": 2,
            "complete": True,
            "source": "ws",
        },
        {
            "notice": {
                "coin": "BTC",
                "interval": "5s",
                "first_ms": 1700000040000,
                "last_ms": 1700000045000,
                "reason": "gap_after_close",
            }
        },
    ],
}


def _state() -> tuple[AggState, list[Any]]:
    state = new_state(("BTC", "ETH"), {"5s": 5000}, 2000, T0 - 1)
    apply_trades(
        state,
        [
            Trade("BTC", "buy", "10.5", "0.25", T0 + 10, 1, ""),
            Trade("BTC", "sell", "9.75", "1", T0 + 20, 2, ""),
        ],
    )
    bars = advance(state, T0 + 7_100)
    apply_trades(state, [Trade("BTC", "buy", "11", "2", T0 + 7_200, 3, "")])
    taint(state, "ETH", T0, T0 + 1000)
    state.joined_by_coin["BTC"] = T0 - 5
    return state, [bars[0], Inexact("BTC", "5s", T0, T0 + 5000, "gap_after_close")]


def test_the_checkpoint_file_keeps_its_recorded_map() -> None:
    state, pending = _state()

    raw = encode_checkpoint(state, CONSUMED, pending, T0 + 7_000)

    assert msgpack.unpackb(raw, raw=False) == GOLDEN


def test_a_recorded_checkpoint_restores_the_same_state() -> None:
    state, pending = _state()

    checkpoint = decode_checkpoint(msgpack.packb(GOLDEN))

    assert checkpoint.state == state
    assert checkpoint.pending == pending
    assert checkpoint.consumed == CONSUMED
    assert checkpoint.covered_ms == T0 + 7_000


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("v",), 2),
        (("grace_ms",), "2000"),
        (("series", 0, "open", 0, 7), "two"),
        (("series", 0, "open", 0, 2), "eleven"),
        (("series", 0, "interval_ms"), 0),
        (("pending", 0, "complete"), 1),
        (("pending", 1, "notice", "last_ms"), 1),
        (("consumed", 0), ["BTC", 123]),
    ],
)
def test_a_checkpoint_wrong_anywhere_is_refused(path: tuple[Any, ...], value: Any) -> None:
    data = msgpack.unpackb(msgpack.packb(GOLDEN), raw=False)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value

    with pytest.raises(ProtocolError):
        decode_checkpoint(msgpack.packb(data))
