"""The aggregator's checkpoint (`CheckpointFile`, version 1): all bar state, the tape offsets
it reflects (`consumed`) and the bars not yet acked by the writer (`pending`). Pure.

Invariant (tests/property/test_checkpoint_props.py): for any trades and any kill point,
checkpoint -> restore -> replay the rest gives exactly the bars of an uninterrupted run."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec
from msgspec import Meta

from hlstream.common.errors import ProtocolError
from hlstream.common.messages import Bar, Inexact
from hlstream.common.wire import Count, Ms
from hlstream.services.aggregator.core import AggState, OpenBar, Series
from hlstream.services.aggregator.tape_feed import Consumed

CHECKPOINT_VERSION = 1


class Checkpoint(msgspec.Struct, frozen=True):
    """What a restarted aggregator resumes from."""

    state: AggState
    consumed: Consumed
    pending: list[Bar | Inexact]
    covered_ms: int  # how far ingest had vouched for the feed (windows after it are held)


class _Window(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """An open window (OpenBar's fields): prices as first written, the volume exact."""

    start_ms: Ms
    open: str
    high_text: str
    low_text: str
    close: str
    first_ts: Ms
    last_ts: Ms
    volume: Decimal
    trades: Count


class _Series(msgspec.Struct, frozen=True):
    coin: str
    interval: str
    interval_ms: Annotated[int, Meta(gt=0)]
    next_start: int | None
    last_close: str | None
    closed_through: int
    open: list[_Window]
    seed_ts: int | None = None  # absent from checkpoints of older releases


class _Notice(msgspec.Struct, frozen=True):
    notice: Inexact


class CheckpointFile(msgspec.Struct, frozen=True):
    v: Annotated[int, Meta(ge=CHECKPOINT_VERSION, le=CHECKPOINT_VERSION)]
    covered_ms: int
    grace_ms: Count
    joined_ms: int
    joined_by_coin: dict[str, int]
    late_trades: Count
    applied_trades: Count
    taints: dict[str, list[tuple[int, int]]]
    series: list[_Series]
    consumed: list[tuple[str, str, Count]]
    pending: list[msgspec.Raw]  # a bar's map, or {"notice": notice map}


# Fields the file shares by name with AggState and Series (a series' `open` is its windows).
_STATE = ("grace_ms", "joined_ms", "joined_by_coin", "late_trades", "applied_trades", "taints")
_SERIES = tuple(name for name in _Series.__struct_fields__ if name != "open")
_PACK = msgspec.msgpack.Encoder()
_READ = msgspec.msgpack.Decoder(CheckpointFile)
_READ_NOTICE = msgspec.msgpack.Decoder(_Notice)
_READ_BAR = msgspec.msgpack.Decoder(Bar)


def encode_checkpoint(
    state: AggState, consumed: Consumed, pending: list[Bar | Inexact], covered_ms: int
) -> bytes:
    """Everything needed to resume exactly."""
    return _PACK.encode(
        CheckpointFile(
            v=CHECKPOINT_VERSION,
            covered_ms=covered_ms,
            **{name: getattr(state, name) for name in _STATE},
            series=[_series_file(series) for series in state.series.values()],
            consumed=[(coin, day, offset) for (coin, day), offset in sorted(consumed.items())],
            pending=[
                msgspec.Raw(_PACK.encode(_Notice(item) if isinstance(item, Inexact) else item))
                for item in pending
            ],
        )
    )


def _series_file(series: Series) -> _Series:
    windows = [
        msgspec.convert(bar, _Window, from_attributes=True) for bar in series.open_bars.values()
    ]
    return _Series(**{name: getattr(series, name) for name in _SERIES}, open=windows)


def decode_checkpoint(raw: bytes) -> Checkpoint:
    """Rebuild what `encode_checkpoint` saved; ProtocolError if anything is off."""
    try:
        saved = _READ.decode(raw)
        pending = [_pending(item) for item in saved.pending]
        restored = [_series(item) for item in saved.series]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"checkpoint: {exc}") from None
    state = AggState(**{name: getattr(saved, name) for name in _STATE})
    for series in restored:
        state.series[(series.coin, series.interval)] = series
        state.by_coin.setdefault(series.coin, []).append(series)
    consumed = {(coin, day): offset for coin, day, offset in saved.consumed}
    return Checkpoint(state, consumed, pending, saved.covered_ms)


def _pending(raw: msgspec.Raw) -> Bar | Inexact:
    try:
        return _READ_NOTICE.decode(raw).notice
    except msgspec.ValidationError:
        return _READ_BAR.decode(raw)


def _series(saved: _Series) -> Series:
    series = Series(**{name: getattr(saved, name) for name in _SERIES})
    for window in saved.open:
        fields = msgspec.structs.asdict(window)
        bar = {**fields, "high": window.high_text, "low": window.low_text}
        series.open_bars[window.start_ms] = msgspec.convert(bar, OpenBar)
    return series
