"""Stage heartbeats as typed values: a `StageStatus` is published on `status.{service}|` and
written to `run_dir/{service}-status.json` (fields: docs/status.md). A field with a default may
be missing when read, so a new optional field keeps older writers readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import msgspec

from hlstream.common.wire import Count, Kind, Ms


class TradeActivity(msgspec.Struct, frozen=True, gc=False):
    """How often a coin trades: `times` distinct trade times over `span_ms` up to its last."""

    times: Count
    span_ms: Ms


class RestStatus(msgspec.Struct, frozen=True, gc=False):
    """A stage's REST requests: the current run of failures, if any, and the last success."""

    failing_since_ms: Ms | None = None  # first failure with no success after it
    failures: Count = 0  # failed requests since failing_since_ms
    last_error: str = ""
    last_ok_ms: Ms | None = None


@dataclass(slots=True)
class RestTracker:
    """Records each REST request's outcome; `status()` is what the heartbeat carries."""

    _status: RestStatus = RestStatus()

    def failed(self, now_ms: int, error: str) -> None:
        """One request failed (each attempt counts, retries included)."""
        since, failures, _, last_ok_ms = msgspec.structs.astuple(self._status)
        self._status = RestStatus(
            now_ms if since is None else since, failures + 1, error, last_ok_ms
        )

    def succeeded(self, now_ms: int) -> None:
        """One request succeeded: the run of failures, if any, is over."""
        self._status = RestStatus(last_ok_ms=now_ms)

    def status(self) -> RestStatus:
        return self._status


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
    connected_since_ms: Ms | None = None  # every link up since then; None while not connected
    disconnected_since_ms: Ms | None = None  # not every link up since then; None while connected
    # per coin: distinct trade times held (up to 15 minutes before its last trade) and their span
    activity: dict[str, TradeActivity] = msgspec.field(default_factory=dict)


class AuditScore(msgspec.Struct, frozen=True, gc=False):
    """One file's rows by venue audit outcome (services/writer/auditor_io.py), counted since
    its ledger began (it survives writer restarts): `audited` = `matched` + `mismatched`."""

    audited: Count = 0
    matched: Count = 0
    mismatched: Count = 0
    pending: Count = 0  # written, waiting for their audit
    unauditable: Count = 0  # the venue never served their candle


class FileStatus(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One CSV file the writer owns, the window start of its last row (None: none yet) and
    its audit score (None: the audit is off; omitted, so the recorded status bytes stay)."""

    coin: str
    interval: str
    last_start_ms: int | None
    audit: AuditScore | None = None


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
    rest: RestStatus | None = None

    def counter(self, name: str) -> int | None:
        """A counter by name, None when this stage does not count it."""
        return self.counters.get(name)
