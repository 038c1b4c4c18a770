"""Tape replay for late-joining taps: the request, the response frames. Pure.

A tap connects a DEALER to ingest's `replay_endpoint` and sends one `ReplayRequest`; the
answer is a run of frames in tape order (<= `CHUNK_TRADES` trades each), then `replay_end`
with how far each day's segment was replayed, or one `replay_error`. The protocol and the
seam rule (drop a live message whose tape span ends within the replay) are in docs/bus.md;
hlstream/tap.py applies it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Trade
from hlstream.common.wire import SCHEMA_VERSION, Count, Ms

CHUNK_TRADES = 2_000
Version = Annotated[int, Meta(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)]


class ReplayRequest(msgspec.Struct, frozen=True, tag_field="type", tag="replay", kw_only=True):
    coin: str
    since_ms: Ms
    v: Version  # a tap's request must name its version


class _Answer(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    v: Version = SCHEMA_VERSION


class ReplayTrades(_Answer, frozen=True, tag="replay_trades"):
    coin: str
    trades: list[Trade]


class ReplayGap(_Answer, frozen=True, tag="replay_gap"):
    coin: str
    from_ms: Ms
    to_ms: Ms
    reason: str


class ReplayEnd(_Answer, frozen=True, tag="replay_end"):
    coin: str
    trades: Count
    tape: dict[str, int]  # {day: offset}: how far each day's segment was replayed


class ReplayError(_Answer, frozen=True, tag="replay_error"):
    error: str


Frame = ReplayRequest | ReplayTrades | ReplayGap | ReplayEnd | ReplayError
ENCODER = msgspec.msgpack.Encoder()
_READ = msgspec.msgpack.Decoder(Frame)


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
