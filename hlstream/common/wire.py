"""The bus's envelope and its one codec (msgspec msgpack).

A payload is one map: `type` (the message's `kind`), `v` (schema version), `session` (new on
every process start), `seq` (per topic, +1 per message) and the message's fields (a status's
own `session` is the envelope's). Field rules live on the message Structs: `Meta`, then
`__post_init__`, then `check_wire` (decode only). Every violation, from undecodable bytes to a
rule or another schema version, is one ProtocolError.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, Protocol, TypeVar

import msgspec
from msgspec import Meta

from hlstream.common.errors import ProtocolError

SCHEMA_VERSION = 2
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_TRADES_PER_BATCH = 10_000

Ms = Annotated[int, Meta(ge=0)]  # epoch milliseconds (UTC)
Count = Annotated[int, Meta(ge=0)]


class Kind(StrEnum):
    """The `type` of a bus payload."""

    TRADES = "trades"
    GAP = "gap"
    STATUS = "status"
    BAR = "bar"
    LATE = "late"
    ACK = "ack"
    BOOK = "book"
    BBO = "bbo"
    FILLS = "fills"
    INEXACT = "inexact"


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """Publisher identity stamped on every message."""

    session: str
    seq: Count


class Wired(Protocol):
    """A message Struct: its `kind` is its payload's `type`."""

    kind: ClassVar[Kind]
    __struct_fields__: ClassVar[tuple[str, ...]]


M = TypeVar("M", bound=Wired)
_ENVELOPE: list[tuple[str, Any]] = [
    ("v", Annotated[int, Meta(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)]),
    ("session", str),
    ("seq", Count),
]
_ENVELOPE_NAMES = tuple(name for name, _ in _ENVELOPE)


class _Shape:
    """A message type and its two payload Structs (envelope fields, then the message's), alike
    on the wire: `incoming` runs the message's rules inside msgspec's decode."""

    def __init__(self, message: type[Wired]) -> None:
        self.message = message
        self.names = message.__struct_fields__
        self.shares = "session" in self.names
        checks = [
            getattr(message, name)
            for name in ("__post_init__", "check_wire")
            if hasattr(message, name)
        ]
        self.outgoing = _payload_type(message, {})
        self.incoming = _payload_type(message, {"__post_init__": _run(checks)} if checks else {})

    def wrap(self, envelope: Envelope, message: Wired) -> msgspec.Struct:
        values = msgspec.structs.astuple(message)  # type: ignore[arg-type]
        if not self.shares:
            return self.outgoing(SCHEMA_VERSION, envelope.session, envelope.seq, *values)
        fields = dict(zip(self.names, values, strict=True))
        return self.outgoing(SCHEMA_VERSION, fields.pop("session"), envelope.seq, **fields)

    def unwrap(self, payload: Any) -> tuple[Envelope, Any]:
        envelope = Envelope(payload.session, payload.seq)
        if not self.shares:
            return envelope, self.message(*msgspec.structs.astuple(payload)[3:])
        return envelope, self.message(**{name: getattr(payload, name) for name in self.names})


def _payload_type(message: type[Wired], namespace: dict[str, object]) -> type[msgspec.Struct]:
    own = [f for f in msgspec.structs.fields(message) if f.name not in _ENVELOPE_NAMES]  # type: ignore[arg-type]
    return msgspec.defstruct(
        f"{message.__name__}Payload",
        [*_ENVELOPE, *((f.name, f.type, _default(f)) for f in own)],
        tag=message.kind.value,
        tag_field="type",
        omit_defaults=message.__struct_config__.omit_defaults,  # type: ignore[attr-defined]
        namespace=namespace,
        frozen=True,
        gc=False,
    )


def _run(checks: list[Callable[[Any], None]]) -> Callable[[Any], None]:
    def check(payload: Any) -> None:
        for one in checks:
            one(payload)

    return check


def _default(field: msgspec.structs.FieldInfo) -> Any:
    """The field's default as `defstruct` takes it (NODEFAULT in both: required)."""
    return msgspec.field(**{"default": field.default, "default_factory": field.default_factory})


_shape = functools.cache(_Shape)  # one per message type: its payload types are built once
_PACK = msgspec.msgpack.Encoder()


def encode_message(envelope: Envelope, message: Wired) -> bytes:
    """The one encoder: a message Struct and its envelope -> msgpack payload."""
    return _PACK.encode(_shape(type(message)).wrap(envelope, message))


class _Untyped(msgspec.Struct, tag="", tag_field="type"):
    """Never written, and refused when read (`Decoder.decode`)."""


class Decoder(Generic[M]):
    """Reads payloads of the given message types (one per socket): (envelope, message), or
    ProtocolError for anything else, another type included."""

    def __init__(self, types: Sequence[type[M]]) -> None:
        shapes = [_shape(message) for message in types]
        self._shapes = {shape.incoming: shape for shape in shapes}
        # _Untyped keeps one type a tagged union too, where a payload without `type` is refused.
        union = functools.reduce(operator.or_, (shape.incoming for shape in shapes), _Untyped)
        self._decoder = msgspec.msgpack.Decoder(union)

    def decode(self, payload: bytes) -> tuple[Envelope, M]:
        if len(payload) > MAX_FRAME_BYTES:
            raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
        try:
            wire = self._decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ProtocolError(f"bad payload: {exc}") from None
        shape = self._shapes.get(type(wire))
        if shape is None:
            raise ProtocolError("bad payload: empty `type`")
        return shape.unwrap(wire)
