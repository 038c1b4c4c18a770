"""A link reads every frame waiting on its socket and hands each over exactly once."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from hlstream.common.config import Settings
from hlstream.common.log import EventLog
from hlstream.services.ingest.channels import Sub
from hlstream.services.ingest.events import Event, EventKind
from hlstream.services.ingest.link_io import BIG_FRAME_TRADES, DRAIN_MAX, Link, Shared
from hlstream.services.ingest.listing_io import Listing
from tests.unit.test_wsframes import ws_frame


class WaitingBytes:
    """A socket whose bytes are all already waiting (as under load), then silence."""

    def __init__(self, data: bytes, halt: threading.Event) -> None:
        self.data = data
        self.halt = halt
        self.idle_r, self.idle_w = os.pipe()  # never written: select sees nothing new

    idle_until = 0.0  # silent (read timeouts) until then, then stop the link

    def recv(self, size: int) -> bytes:
        if not self.data:
            if time.monotonic() < self.idle_until:
                time.sleep(0.05)
            else:
                self.halt.set()
            raise TimeoutError("idle")
        out, self.data = self.data[:size], self.data[size:]
        return out

    def pending(self) -> bool:
        return bool(self.data)

    def fileno(self) -> int:
        return self.idle_r


class WaitingFrames:
    """A websocket whose frames are all already waiting on its socket."""

    def __init__(self, frames: list[str], halt: threading.Event) -> None:
        self.sock = WaitingBytes(b"".join(ws_frame(f.encode()) for f in frames), halt)
        self.sent: list[str] = []

    def settimeout(self, _timeout: float) -> None:
        pass

    def send(self, text: str) -> None:
        self.sent.append(text)


def trades_frame(tid: int, count: int = 1) -> str:
    data = [
        {
            "coin": "BTC",
            "side": "B",
            "px": "100.0",
            "sz": "0.1",
            "time": 1_764_500_000_000,
            "hash": "0x0",
            "tid": tid * 1000 + i,
        }
        for i in range(count)
    ]
    return json.dumps({"channel": "trades", "data": data})


def run_link(
    frames: list[str], settings: Settings | None = None, idle_s: float = 0.0
) -> tuple[list[tuple[list[Event], int | None]], list[str]]:
    calls: list[tuple[list[Event], int | None]] = []
    halt = threading.Event()
    shared = Shared(
        settings or Settings(),
        EventLog("test"),
        halt,
        lambda _link, events, covered: calls.append((list(events), covered)),
        Listing("http://127.0.0.1:9/info", []),
    )
    link = Link(0, (Sub("trades", "BTC"),), shared)
    ws = WaitingFrames(frames, halt)
    ws.sock.idle_until = time.monotonic() + idle_s
    assert link._session(ws) == "stop"  # type: ignore[arg-type]
    return calls, ws.sent


def _tids(calls: list[tuple[list[Event], Any]]) -> list[int]:
    return [
        t.tid
        for events, _ in calls
        for e in events
        if e.kind is EventKind.FRAME and e.frame is not None
        for t in e.frame.trades
    ]


def test_more_frames_waiting_than_one_read_takes_are_all_handed_over_once():
    count = 2 * DRAIN_MAX + 7
    calls, _ = run_link([trades_frame(i) for i in range(count)])
    assert _tids(calls) == [i * 1000 for i in range(count)]
    # A call cut short at DRAIN_MAX frames does not vouch for coverage; a drained one does.
    covered = [c for events, c in calls if events]
    assert covered[0] is None and covered[-1] is not None


def test_a_big_frame_is_handed_over_without_waiting_for_the_frames_behind_it():
    calls, _ = run_link([trades_frame(1, BIG_FRAME_TRADES), trades_frame(2), trades_frame(3)])
    batches = [[t // 1000 for t in _tids([c])] for c in calls if _tids([c])]
    assert batches[0] == [1] * BIG_FRAME_TRADES and batches[1] == [2, 3]


def test_a_silent_feed_gets_the_json_ping_and_subscriptions_are_sent_as_json():
    _, sent = run_link([], Settings(ping_seconds=1.0), idle_s=1.3)
    assert sent[0] == json.dumps(
        {"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}},
        separators=(",", ":"),
    )
    assert sent[1:] == ['{"method":"ping"}']


def test_a_silent_feed_is_pinged_and_ended_when_the_pong_never_comes():
    settings = Settings(idle_ping_seconds=0.3, pong_timeout_seconds=0.3)
    calls: list[int | None] = []
    halt = threading.Event()
    shared = Shared(
        settings,
        EventLog("test"),
        halt,
        lambda _link, _events, covered: calls.append(covered),
        Listing("http://127.0.0.1:9/info", []),
    )
    link = Link(0, (Sub("trades", "BTC"),), shared)
    ws = WaitingFrames([trades_frame(1)], halt)
    ws.sock.idle_until = time.monotonic() + 30.0
    started = time.monotonic()
    assert link._session(ws) == "pong_timeout"  # type: ignore[arg-type]
    assert time.monotonic() - started < 5.0
    assert ws.sent[1:] == ['{"method":"ping"}']
    # Once the ping is out the link vouches for nothing more until a pong comes.
    assert calls[-1] is None and any(c is not None for c in calls)
