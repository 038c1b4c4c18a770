"""Stage heartbeats as typed values: `StageStatus`, published once a second on
`status.{service}|` and written to `run_dir/{service}-status.json` (common/status_io.py).

Both carry the same map, the Structs below (the file as JSON, the bus with the envelope):

    service, ts_ms, pid, session     who and when
    counters                         {name: int}: the stage's dataclass counters by name
    feed                             ingest only: {connected, links, links_up, delisted,
                                     msgs_per_s, last_trade_ms: {coin: ms}, covered_ms,
                                     backlog_bytes}; else nil. covered_ms: every trade ingest
                                     received before this wall-clock ms is on the tape and was
                                     published before this heartbeat (the aggregator holds
                                     windows on it). backlog_bytes: bytes the venue sent that
                                     ingest has not handled yet (socket queue + read buffer),
                                     the most of any link: overload shows here first
    files                            writer only: {file name: {coin, interval, last_start_ms}}
    refused                          writer only: {"COIN interval": error}

Reading is strict (ProtocolError on any wrong type), so the aggregator and `hlstream status`
read fields, never string keys of an untyped map. A field with a default may be missing
when read, so a new optional field is one line here and older writers stay readable.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from hlstream.common.wire import Count, Kind, Ms


class FeedStatus(msgspec.Struct, frozen=True, gc=False):
    """Ingest's websocket feed: `connected` only when every link is up."""

    connected: bool
    links: Count
    links_up: Count
    delisted: tuple[str, ...]
    msgs_per_s: float
    last_trade_ms: dict[str, int]
    covered_ms: Ms  # every trade received before this wall-clock ms is taped and published
    backlog_bytes: Count = 0  # received from the venue, not yet handled: the most of any link


class FileStatus(msgspec.Struct, frozen=True, gc=False):
    """One CSV file the writer owns and the window start of its last row."""

    coin: str
    interval: str
    last_start_ms: int | None = None


class StageStatus(msgspec.Struct, frozen=True):
    """One stage's heartbeat."""

    kind: ClassVar[Kind] = Kind.STATUS
    service: str
    ts_ms: Ms
    pid: Count
    session: str
    counters: dict[str, int]
    feed: FeedStatus | None = None
    files: dict[str, FileStatus] = msgspec.field(default_factory=dict)
    refused: dict[str, str] = msgspec.field(default_factory=dict)

    def counter(self, name: str) -> int | None:
        """A counter by name, None when this stage does not count it."""
        return self.counters.get(name)
