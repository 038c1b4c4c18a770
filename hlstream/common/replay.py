"""Tape replay for late-joining taps: the request, the response and the seam rule. Pure.

Ingest serves the trade tape on `replay_endpoint` (a ROUTER; default
`ipc://{run_dir}/replay.sock`). A tap connects a DEALER and sends one frame, a msgpack map:

    {"v": 2, "type": "replay", "coin": "BTC", "since_ms": 1764500000000}

The answer is a run of frames, each a msgpack map, in tape order (the `Frame` Structs below,
tagged by `type`; a request is one of them, so the server reads its socket with one Decoder):

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
from typing import Annotated

import msgspec
from msgspec import Meta

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Gap, Trade, TradeBatch
from hlstream.common.wire import SCHEMA_VERSION, Count, Ms

CHUNK_TRADES = 2_000
MAX_SINCE_DAYS = 36_500


class _Frame(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    v: Annotated[int, Meta(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)]


class ReplayRequest(_Frame, frozen=True, tag="replay"):
    coin: str
    since_ms: Ms


class ReplayTrades(_Frame, frozen=True, tag="replay_trades"):
    coin: str
    trades: list[Trade]


class ReplayGap(_Frame, frozen=True, tag="replay_gap"):
    coin: str
    from_ms: Ms
    to_ms: Ms
    reason: str


class ReplayEnd(_Frame, frozen=True, tag="replay_end"):
    coin: str
    trades: Count
    tape: dict[str, int]  # {day: offset}: how far each day's segment was replayed


class ReplayError(_Frame, frozen=True, tag="replay_error"):
    error: str


Frame = ReplayRequest | ReplayTrades | ReplayGap | ReplayEnd | ReplayError
_PACK = msgspec.msgpack.Encoder()
_READ = msgspec.msgpack.Decoder(Frame)


def encode_frame(frame: Frame) -> bytes:
    return _PACK.encode(frame)


def parse_request(payload: bytes, coins: tuple[str, ...], now_ms: int) -> ReplayRequest:
    """Decode and validate a request; ProtocolError with a one-line reason."""
    try:
        frame = _READ.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(
            f"{exc} (expected {{'v': {SCHEMA_VERSION}, 'type': 'replay', ...}})"
        ) from None
    if not isinstance(frame, ReplayRequest):
        raise ProtocolError(f"expected a replay request, got {type(frame).__name__}")
    if frame.coin not in coins:
        raise ProtocolError(f"coin {frame.coin!r} is not streamed here")
    if frame.since_ms > now_ms:
        raise ProtocolError(f"since_ms {frame.since_ms} is not between 0 and now")
    return frame


def request(coin: str, since_ms: int) -> ReplayRequest:
    return ReplayRequest(v=SCHEMA_VERSION, coin=coin, since_ms=since_ms)


def trades_frame(coin: str, trades: list[Trade]) -> ReplayTrades:
    return ReplayTrades(v=SCHEMA_VERSION, coin=coin, trades=trades)


def gap_frame(gap: Gap) -> ReplayGap:
    return ReplayGap(
        v=SCHEMA_VERSION, coin=gap.coin, from_ms=gap.from_ms, to_ms=gap.to_ms, reason=gap.reason
    )


def end_frame(coin: str, trades: int, tape: Mapping[str, int]) -> ReplayEnd:
    return ReplayEnd(v=SCHEMA_VERSION, coin=coin, trades=trades, tape=dict(tape))


def error_frame(message: str) -> ReplayError:
    return ReplayError(v=SCHEMA_VERSION, error=message)


def in_replay(message: TradeBatch | Gap, replayed: Mapping[str, int]) -> bool:
    """The seam rule: was this live message already part of the replay?"""
    span = message.tape
    return span is not None and span.day in replayed and span.end <= replayed[span.day]
