"""Pure parsing of the venue's websocket frames: the only module that knows its trade fields;
downstream sees `Trade`. A trade without a usable time, price, size, side or tid, or whose coin
holds a line break, is rejected and counted, never stamped with a local clock; a bad hash or
`users` is dropped and the trade kept (neither is part of its identity), so the tape can refuse
no trade that passes. Only a frame that is not a JSON object with a string channel (and, for
trades, a data list) raises ProtocolError.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Any, Literal

import msgspec
import orjson

from hlstream.common.addresses import Users, all_addresses, users_or_none
from hlstream.common.decimals import all_positive_decimals, is_positive_decimal
from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Side, Trade
from hlstream.common.timebucket import normalize_ts_ms

PING = '{"method":"ping"}'
# The optional channels ingest subscribes to and publishes (channels.channel_message).
DATA_CHANNELS = frozenset({"l2Book", "bbo", "userFills"})
VENUE_SIDES: dict[str, Side] = {"B": "buy", "A": "sell"}
_MS_MIN, _MS_MAX = 10**12, 10**15  # an int time in this range is epoch ms, taken as is
_TID_MAX = 2**64 - 1  # the bus (msgpack) carries no bigger integer


class FrameKind(Enum):
    TRADES = "trades"
    PONG = "pong"
    SUBSCRIBED = "subscriptionResponse"
    ERROR = "error"
    DATA = "data"  # a known non-trade channel (l2Book, bbo, ...), passed through as `data`
    UNKNOWN = "unknown"  # a well-formed frame on a channel we do not know


class Frame(msgspec.Struct, frozen=True):
    """One classified websocket frame."""

    kind: FrameKind
    channel: str
    trades: tuple[Trade, ...] = ()
    rejected: int = 0
    error: str = ""
    data: Any = None
    coin: str = ""  # trades frames: the one coin of all their trades ("" if none or several)


# Fast path and slow path, held equal by tests/property/test_ingest_parse_props.py.
class _VenueTrade(msgspec.Struct, gc=False):
    """A WsTrade as the venue sends it (unknown fields are skipped)."""

    coin: str
    side: Literal["B", "A"]
    px: str
    sz: str
    time: Annotated[int, msgspec.Meta(ge=_MS_MIN, le=_MS_MAX)]
    tid: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # bigger: judged by parse_trade
    hash: str = ""
    users: Users | None = None


class _TradesFrame(msgspec.Struct):
    channel: Literal["trades"]
    data: list[_VenueTrade]


_READ_TRADES = msgspec.json.Decoder(_TradesFrame)


def parse_frame(text: str | bytes) -> Frame:
    """Classify one websocket text frame (ProtocolError if not JSON of a known shape); a one-coin
    trades frame of well-formed entries is decoded typed, in C, any other by `_parse_general`."""
    try:
        data = _READ_TRADES.decode(text).data
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _parse_general(text)
    if not data:
        return Frame(FrameKind.TRADES, "trades")
    coin = data[0].coin
    if (
        not coin
        or _has_line_break(coin)
        or {item.coin for item in data} != {coin}
        or not all_positive_decimals([item.px for item in data] + [item.sz for item in data])
        or _has_line_break("".join([item.hash for item in data]))
        or not all_addresses([a for item in data if item.users is not None for a in item.users])
    ):
        return _parse_general(text)
    sides = VENUE_SIDES
    trades = [Trade(coin, sides[t.side], t.px, t.sz, t.time, t.tid, t.hash, t.users) for t in data]
    return Frame(FrameKind.TRADES, "trades", tuple(trades), coin=coin)


def parse_trade(item: object) -> Trade | None:
    """Map one venue WsTrade to a Trade; None if any identity or value field is unusable."""
    if not isinstance(item, dict):
        return None
    coin, side, px, sz, tid = (item.get(k) for k in ("coin", "side", "px", "sz", "tid"))
    if not isinstance(coin, str) or not coin or _has_line_break(coin):
        return None
    if not isinstance(side, str) or side not in VENUE_SIDES:
        return None
    if not isinstance(tid, int) or isinstance(tid, bool) or not 0 <= tid <= _TID_MAX:
        return None
    if not is_positive_decimal(px) or not is_positive_decimal(sz):
        return None
    ts_ms = normalize_ts_ms(item.get("time"))
    if ts_ms is None:
        return None
    tx_hash = item.get("hash")
    if not isinstance(tx_hash, str) or _has_line_break(tx_hash):
        tx_hash = ""
    users = users_or_none(item.get("users"))
    return Trade(coin, VENUE_SIDES[side], str(px), str(sz), ts_ms, tid, tx_hash, users)


def _parse_general(text: str | bytes) -> Frame:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:  # orjson refuses what the stdlib takes (NaN, Infinity): ask it too
            obj = json.loads(text)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise ProtocolError("frame is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"frame is a JSON {type(obj).__name__}, not an object")
    channel = obj.get("channel")
    if not isinstance(channel, str):
        raise ProtocolError("frame has no channel")
    data = obj.get("data")
    if channel == "trades":
        if not isinstance(data, list):
            raise ProtocolError("trades frame data is not a list")
        trades = tuple(t for t in map(parse_trade, data) if t is not None)
        coins = {t.coin for t in trades}
        coin = coins.pop() if len(coins) == 1 else ""
        return Frame(FrameKind.TRADES, channel, trades, len(data) - len(trades), coin=coin)
    if channel == "pong":
        return Frame(FrameKind.PONG, channel)
    if channel == "subscriptionResponse":
        return Frame(FrameKind.SUBSCRIBED, channel, data=data)
    if channel == "error":
        return Frame(
            FrameKind.ERROR, channel, error=data if isinstance(data, str) else json.dumps(data)
        )
    kind = FrameKind.DATA if channel in DATA_CHANNELS else FrameKind.UNKNOWN
    return Frame(kind, channel, data=data)


def _has_line_break(text: str) -> bool:
    return "\n" in text or "\r" in text
