"""Ingest's two trade readers agree: `parse_frame` (typed, in C, for a frame of one coin whose
every entry is well formed) yields exactly what `parse_trade` makes of each entry."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from hypothesis import assume, given
from hypothesis import strategies as st

from hlstream.services.ingest.core import parse
from hlstream.services.ingest.core.parse import FrameKind, parse_frame, parse_trade

MS = 1_785_648_521_306
MISSING = object()
DECIMALS = ["1", "63471.0", "0.00155", "12", "01.50"]
ODD_DECIMALS = [".5", "5.", "0", "0.0", "-1", "+1", "1e5", " 1", "NaN", "1_0", "\u0661", "1\n", ""]
ODD_DECIMALS += [1, 1.5, None]
BUYER, SELLER = (
    "0x818b120e0b475dc79d62092a3ae0d0e31cbf2c99",
    "0x6E8BC7CD0978397b06a14af2a8c31f5daeffea79",
)
FIELDS: dict[str, tuple[list[Any], list[Any]]] = {  # (usual values, odd ones)
    "coin": (["BTC", "ETH", "@107"], ["", "B\nC", "x\r", 5, None]),
    "side": (["B", "A"], ["b", "X", None, 1, ["B"]]),
    "px": (DECIMALS, ODD_DECIMALS),
    "sz": (DECIMALS, ODD_DECIMALS),
    "time": (
        [MS, MS + 1, 10**12, 10**15],
        [1_785_648_521, 10**12 - 1, 10**15 + 1, 0, -1, 1.5e12, str(MS), True, None],
    ),
    "tid": ([0, 7, 2**50, 2**63 - 1], [-1, 2**64 + 1, True, "7", 1.0, None]),
    "hash": (["", "0xab"], ["a\nb", "\r", 7, None]),
    "users": (
        [[BUYER, SELLER], [SELLER, SELLER], None],
        [
            [BUYER],
            [BUYER, SELLER, BUYER],
            [BUYER, 1],
            [BUYER, SELLER[:-1]],
            [BUYER, "0x" + "g" * 40],
        ]
        + [[BUYER, "0x" + "a" * 39 + "\u0661"], [BUYER[:-1], "0" + SELLER], "0x12", {}, 5],
    ),
}


@st.composite
def venue_entry(draw: st.DrawFn, coin: str | None = None, odd: bool | None = None) -> Any:
    """A usual entry; unless `odd` is False, maybe with one field odd or missing."""
    entry = {name: draw(st.sampled_from(usual)) for name, (usual, _) in FIELDS.items()}
    if coin is not None:
        entry["coin"] = coin
    if odd is not False and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(FIELDS)))
        value = draw(st.sampled_from([*FIELDS[name][1], MISSING]))
        if value is MISSING:
            del entry[name]
        else:
            entry[name] = value
    return entry


def reference(entries: list[Any]) -> tuple[tuple[Any, ...], int, str]:
    """What the entry-by-entry reader makes of a frame: (trades, rejected, coin)."""
    trades = tuple(t for t in map(parse_trade, entries) if t is not None)
    coins = {t.coin for t in trades}
    return trades, len(entries) - len(trades), coins.pop() if len(coins) == 1 else ""


@given(st.lists(venue_entry(), max_size=8), st.booleans())
def test_parse_frame_and_parse_trade_agree_on_any_trades_frame(
    entries: list[Any], as_bytes: bool
) -> None:
    text = json.dumps({"channel": "trades", "data": entries})
    decoded = json.loads(text)["data"]  # the values parse_trade sees after JSON

    frame = parse_frame(text.encode() if as_bytes else text)

    assert frame.kind is FrameKind.TRADES
    assert (frame.trades, frame.rejected, frame.coin) == reference(decoded)


@given(st.sampled_from(["BTC", "@107"]).flatmap(lambda c: st.lists(venue_entry(c, False))))
def test_a_well_formed_frame_of_one_coin_takes_the_typed_path(entries: list[Any]) -> None:
    text = json.dumps({"channel": "trades", "data": entries})
    expected = reference(json.loads(text)["data"])
    assume(expected[1] == 0)

    with mock.patch.object(parse, "_parse_general", side_effect=AssertionError("not typed")):
        frame = parse_frame(text)

    assert (frame.trades, frame.rejected, frame.coin) == expected
