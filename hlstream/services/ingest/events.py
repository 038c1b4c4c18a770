"""What a link tells the shell: the events of the frames it read, in order, and what they
vouch for (link_io.py produces them, shell.py consumes them)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import NamedTuple

import msgspec

from hlstream.services.ingest.core.parse import Frame


class EventKind(Enum):
    """What happened on a link (the fields of `Event` each kind fills in brackets)."""

    CONNECTED = "connected"  # [coins]: trade coins just subscribed; next frame is a replay
    FRAME = "frame"  # [frame, recv_ms, recv_us]
    MALFORMED = "malformed"  # [text]
    ERROR = "error"  # [text]: the venue's error frame
    # [text, recv_ms]: the reason ("stop" on shutdown); after a silent death (SILENT_DEATHS),
    # the wall time of the last frame received, else 0
    DISCONNECTED = "disconnected"
    DELISTED = "delisted"  # [coins]
    RETIRED = "retired"  # no subscription left on this link
    CRASHED = "crashed"  # a bug in the link thread


class Event(msgspec.Struct, frozen=True):
    """What a link tells the shell's handler (one per frame: a Struct)."""

    kind: EventKind
    link: int
    frame: Frame | None = None
    recv_ms: int = 0
    recv_us: int = 0
    coins: tuple[str, ...] = ()
    text: str = ""


class Drained(NamedTuple):
    """The events of the frames one read found waiting, and what they vouch for."""

    events: list[Event]
    covered_ms: int | None  # every frame received before it is in `events` (None: unknown)
    closed: bool  # the server sent a close frame


# The shell's handler: (link index, events in order, covered_ms: every frame this link received
# before it is among the events handed over so far, or None).
Handler = Callable[[int, list[Event], int | None], None]
