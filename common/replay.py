"""Tape replay for late-joining taps: the request, the response and the seam rule. Pure.

Ingest serves the trade tape on `replay_endpoint` (a ROUTER; default
`ipc://{run_dir}/replay.sock`). A tap connects a DEALER and sends one frame, a msgpack map:

    {"v": 2, "type": "replay", "coin": "BTC", "since_ms": 1764500000000}

The answer is a run of frames, each a msgpack map, in tape order:

    {"v": 2, "type": "replay_trades", "coin": ..., "trades": [trade, ...]}   (<= 2000 each;
                                      trade maps exactly as in bus `trades` messages)
    {"v": 2, "type": "replay_gap", "coin": ..., "from_ms", "to_ms", "reason"}
    {"v": 2, "type": "replay_end", "coin": ..., "trades": total, "tape": {day: offset}}
or  {"v": 2, "type": "replay_error", "error": "one line"}

Seam rule: subscribe to the live topics first, and send the request only once the
subscription is live (the first `status.ingest|` heartbeat has arrived; ingest sends one
every 0.5 s). Every live `trades`/`gap` message carries `tape: [day, start, end]`, the bytes
it occupies in its tape segment. A live message with `end <= replay_end.tape[day]` was in
the replay: drop it. Every other one is new. Ingest reads each day only up to its last
commit (a commit never splits a message), so no message is half in the replay; and ingest
tapes before it publishes, so anything published before the subscription went live is in
the replay. Result: no gap and no duplicate at the seam.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Gap, Trade, TradeBatch, trade_to_wire
from hlstream.common.wire import SCHEMA_VERSION, as_int, need

CHUNK_TRADES = 2_000
MAX_SINCE_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    coin: str
    since_ms: int


def parse_request(data: object, coins: tuple[str, ...], now_ms: int) -> ReplayRequest:
    """Validate a request map; ProtocolError with a one-line reason."""
    if not isinstance(data, dict):
        raise ProtocolError("request is not a map")
    if data.get("v") != SCHEMA_VERSION or data.get("type") != "replay":
        raise ProtocolError(f"expected {{'v': {SCHEMA_VERSION}, 'type': 'replay', ...}}")
    coin = need(data, "coin", str)
    if coin not in coins:
        raise ProtocolError(f"coin {coin!r} is not streamed here")
    since_ms = as_int(data.get("since_ms"), "field 'since_ms'")
    if not 0 <= since_ms <= now_ms:
        raise ProtocolError(f"since_ms {since_ms} is not between 0 and now")
    return ReplayRequest(coin, since_ms)


def request(coin: str, since_ms: int) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "type": "replay", "coin": coin, "since_ms": since_ms}


def trades_frame(coin: str, trades: list[Trade]) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "type": "replay_trades",
        "coin": coin,
        "trades": [trade_to_wire(t) for t in trades],
    }


def gap_frame(gap: Gap) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "type": "replay_gap",
        "coin": gap.coin,
        "from_ms": gap.from_ms,
        "to_ms": gap.to_ms,
        "reason": gap.reason,
    }


def end_frame(coin: str, trades: int, tape: Mapping[str, int]) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "type": "replay_end",
        "coin": coin,
        "trades": trades,
        "tape": dict(tape),
    }


def error_frame(message: str) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "type": "replay_error", "error": message}


def in_replay(message: TradeBatch | Gap, replayed: Mapping[str, int]) -> bool:
    """The seam rule: was this live message already part of the replay?"""
    span = message.tape
    return span is not None and span.day in replayed and span.end <= replayed[span.day]
