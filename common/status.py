"""Stage heartbeats as typed values: `StageStatus`, published once a second on
`status.{service}|` and written to `run_dir/{service}-status.json` (common/status_io.py).

Both carry the same map, `status_to_wire(status)`:

    service, ts_ms, pid, session     who and when
    counters                         {name: int}: the stage's dataclass counters by name
    feed                             ingest only: {connected, links, links_up, delisted,
                                     msgs_per_s, last_trade_ms: {coin: ms}, covered_ms,
                                     backlog_bytes, connected_since_ms, disconnected_since_ms,
                                     activity: {coin: {times, span_ms}}}; else nil.
                                     covered_ms: every trade ingest
                                     received before this wall-clock ms is on the tape and was
                                     published before this heartbeat (the aggregator holds
                                     windows on it). backlog_bytes: bytes the venue sent that
                                     ingest has not handled yet (socket queue + read buffer),
                                     the most of any link: overload shows here first.
                                     connected_since_ms / disconnected_since_ms: wall-clock ms
                                     since which every link is up / not every link is up (nil
                                     while the other holds; ingest's start if never connected).
                                     activity: distinct trade times ingest holds for the coin
                                     (those up to 15 minutes before its last trade) and the
                                     span in ms from the oldest to the newest of them
    files                            writer only: {file name: {coin, interval, last_start_ms}}
    refused                          writer only: {"COIN interval": error}
    rest                             stages that call REST (ingest, writer), else nil:
                                     {failing_since_ms, failures, last_error, last_ok_ms}: the
                                     first failed request with no success after it (nil while
                                     the last request succeeded), failed requests since then,
                                     the last one's error, and the last success

`status_from_wire` is strict (ProtocolError on any wrong type), so the aggregator and
`hlstream status` read fields, never string keys of an untyped map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hlstream.common.errors import ProtocolError
from hlstream.common.wire import as_int, need, need_map


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Ingest's websocket feed: `connected` only when every link is up."""

    connected: bool
    links: int
    links_up: int
    delisted: tuple[str, ...]
    msgs_per_s: float
    last_trade_ms: Mapping[str, int]
    covered_ms: int = 0  # every trade received before this wall-clock ms is taped and published
    backlog_bytes: int = 0  # received from the venue, not yet handled: the most of any link
    connected_since_ms: int | None = None  # every link up since then; None while not connected
    disconnected_since_ms: int | None = None  # not every link up since then; None while connected
    activity: Mapping[str, TradeActivity] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TradeActivity:
    """How often a coin trades: `times` distinct trade times over `span_ms` up to its last."""

    times: int
    span_ms: int


@dataclass(frozen=True, slots=True)
class RestStatus:
    """A stage's REST requests: the current run of failures, if any, and the last success."""

    failing_since_ms: int | None = None  # first failure with no success after it
    failures: int = 0  # failed requests since failing_since_ms
    last_error: str = ""
    last_ok_ms: int | None = None


@dataclass(slots=True)
class RestTracker:
    """Records each REST request's outcome; `status()` is what the heartbeat carries."""

    failing_since_ms: int | None = None
    failures: int = 0
    last_error: str = ""
    last_ok_ms: int | None = None

    def failed(self, now_ms: int, error: str) -> None:
        """One request failed (each attempt counts, retries included)."""
        if self.failing_since_ms is None:
            self.failing_since_ms = now_ms
        self.failures += 1
        self.last_error = error

    def succeeded(self, now_ms: int) -> None:
        """One request succeeded: the run of failures, if any, is over."""
        self.failing_since_ms = None
        self.failures = 0
        self.last_error = ""
        self.last_ok_ms = now_ms

    def status(self) -> RestStatus:
        return RestStatus(self.failing_since_ms, self.failures, self.last_error, self.last_ok_ms)


@dataclass(frozen=True, slots=True)
class FileStatus:
    """One CSV file the writer owns and the window start of its last row."""

    coin: str
    interval: str
    last_start_ms: int | None


@dataclass(frozen=True, slots=True)
class StageStatus:
    """One stage's heartbeat."""

    service: str
    ts_ms: int
    pid: int
    session: str
    counters: Mapping[str, int]
    feed: FeedStatus | None = None
    files: Mapping[str, FileStatus] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)
    rest: RestStatus | None = None

    def counter(self, name: str) -> int | None:
        """A counter by name, None when this stage does not count it."""
        return self.counters.get(name)


def status_to_wire(status: StageStatus) -> dict[str, Any]:
    feed = status.feed
    return {
        "service": status.service,
        "ts_ms": status.ts_ms,
        "pid": status.pid,
        "session": status.session,
        "counters": dict(status.counters),
        "feed": None
        if feed is None
        else {
            "connected": feed.connected,
            "links": feed.links,
            "links_up": feed.links_up,
            "delisted": list(feed.delisted),
            "msgs_per_s": feed.msgs_per_s,
            "last_trade_ms": dict(feed.last_trade_ms),
            "covered_ms": feed.covered_ms,
            "backlog_bytes": feed.backlog_bytes,
            "connected_since_ms": feed.connected_since_ms,
            "disconnected_since_ms": feed.disconnected_since_ms,
            "activity": {
                coin: {"times": a.times, "span_ms": a.span_ms} for coin, a in feed.activity.items()
            },
        },
        "files": {
            name: {"coin": f.coin, "interval": f.interval, "last_start_ms": f.last_start_ms}
            for name, f in status.files.items()
        },
        "refused": dict(status.refused),
        "rest": None
        if status.rest is None
        else {
            "failing_since_ms": status.rest.failing_since_ms,
            "failures": status.rest.failures,
            "last_error": status.rest.last_error,
            "last_ok_ms": status.rest.last_ok_ms,
        },
    }


def status_from_wire(data: Any) -> StageStatus:
    """Read a status map (bus body or status file); raise ProtocolError if malformed."""
    counters = {
        name: as_int(value, f"counter {name!r}")
        for name, value in need_map(data, "counters").items()
    }
    raw_feed = data.get("feed")
    raw_rest = data.get("rest")
    return StageStatus(
        service=need(data, "service", str),
        ts_ms=need(data, "ts_ms", int),
        pid=need(data, "pid", int),
        session=need(data, "session", str),
        counters=counters,
        feed=None if raw_feed is None else _feed(raw_feed),
        files={name: _file(info) for name, info in need_map(data, "files").items()},
        refused={key: str(error) for key, error in need_map(data, "refused").items()},
        rest=None if raw_rest is None else _rest(raw_rest),
    )


def _feed(data: Any) -> FeedStatus:
    if not isinstance(data, dict):
        raise ProtocolError("feed is not a map")
    delisted = need(data, "delisted", list)
    if not all(isinstance(coin, str) for coin in delisted):
        raise ProtocolError("feed.delisted holds a non-string")
    rate = data.get("msgs_per_s")
    if not isinstance(rate, int | float) or isinstance(rate, bool):
        raise ProtocolError("feed.msgs_per_s is not a number")
    return FeedStatus(
        connected=need(data, "connected", bool),
        links=need(data, "links", int),
        links_up=need(data, "links_up", int),
        delisted=tuple(delisted),
        msgs_per_s=float(rate),
        last_trade_ms={
            coin: as_int(ms, f"last_trade_ms[{coin!r}]")
            for coin, ms in need_map(data, "last_trade_ms").items()
        },
        covered_ms=need(data, "covered_ms", int),
        backlog_bytes=as_int(data.get("backlog_bytes", 0), "feed.backlog_bytes"),
        connected_since_ms=_optional_int(data, "connected_since_ms"),
        disconnected_since_ms=_optional_int(data, "disconnected_since_ms"),
        activity={
            coin: TradeActivity(need(info, "times", int), need(info, "span_ms", int))
            for coin, info in _map_or_empty(data, "activity").items()
        },
    )


def _optional_int(data: Any, key: str) -> int | None:
    """An int field that may be nil or absent (a heartbeat from before it existed)."""
    value = data.get(key)
    return None if value is None else as_int(value, key)


def _map_or_empty(data: Any, key: str) -> dict[str, Any]:
    """A map field that may be absent (a heartbeat from before it existed)."""
    return need_map(data, key) if key in data else {}


def _rest(data: Any) -> RestStatus:
    if not isinstance(data, dict):
        raise ProtocolError("rest is not a map")
    return RestStatus(
        failing_since_ms=_optional_int(data, "failing_since_ms"),
        failures=need(data, "failures", int),
        last_error=need(data, "last_error", str),
        last_ok_ms=_optional_int(data, "last_ok_ms"),
    )


def _file(data: Any) -> FileStatus:
    last = data.get("last_start_ms") if isinstance(data, dict) else None
    return FileStatus(
        coin=need(data, "coin", str),
        interval=need(data, "interval", str),
        last_start_ms=None if last is None else as_int(last, "last_start_ms"),
    )
