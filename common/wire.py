"""The msgpack envelope every bus payload shares, and strict field readers for the codecs.

A payload is a msgpack map: `v` (schema version), `type` (a `Kind`), `session` (random hex
id, new on every process start), `seq` (per topic, +1 per message) and the type's fields.
`unpack` checks the envelope and size and raises ProtocolError on anything else; the typed
codecs (common/messages.py, common/status.py, common/book.py) read fields with `need`.

Schema versions: 1 = first release; 2 = status bodies nest `counters`, `feed`, `files`
(common/status.py). A subscriber refuses other versions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

import msgpack

from hlstream.common.errors import ProtocolError

SCHEMA_VERSION = 2
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_TRADES_PER_BATCH = 10_000
_T = TypeVar("_T")


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


class Envelope(NamedTuple):
    """Publisher identity stamped on every message."""

    session: str
    seq: int


_packer = msgpack.Packer(use_bin_type=True)


def encode(kind: str, envelope: Envelope, body: dict[str, Any]) -> bytes:
    """Pack one payload: envelope + type + body."""
    payload = {
        "v": SCHEMA_VERSION,
        "type": str(kind),
        "session": envelope.session,
        "seq": envelope.seq,
    }
    payload.update(body)
    packed: bytes = _packer.pack(payload)
    return packed


def decode(payload: bytes) -> dict[str, Any]:
    """Unpack and check the envelope of one payload; raise ProtocolError if malformed."""
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        data = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            max_array_len=MAX_TRADES_PER_BATCH,
            max_map_len=4096,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(f"undecodable msgpack: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ProtocolError("payload is not a map")
    version = data.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported schema version {version!r}")
    need(data, "type", str)
    need(data, "session", str)
    need(data, "seq", int)
    return data


def need(data: Any, key: str, kind: type[_T]) -> _T:
    """`data[key]` if it is a `kind` (bool never counts as int); else ProtocolError."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"field {key!r} missing or not {kind.__name__}")
    return value


def need_map(data: Any, key: str) -> dict[str, Any]:
    """`data[key]` if it is a map with string keys; else ProtocolError."""
    value = need(data, key, dict)
    if not all(isinstance(name, str) for name in value):
        raise ProtocolError(f"field {key!r} has a non-string key")
    return value


def need_list(data: Any, key: str) -> list[Any]:
    return need(data, key, list)


def as_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{what} is not an integer")
    return value
