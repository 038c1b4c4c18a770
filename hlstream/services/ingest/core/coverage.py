"""Pure bookkeeping of ingest's links: which are up, and how far ingest vouches for the feed.

Invariant: `covered_ms` never moves back. It moves only while every live link is up, every
subscribe replay is in (after `REPLAY_WAIT_S` the rest are given up on: a coin that never
traded sends none) and nothing admitted waits for the tape; then to the oldest of the live
links' own marks (each: every frame it received before was handed over), never past now.
"""

from __future__ import annotations

from hlstream.services.ingest.core.dedupe import ReplayCheck

REPLAY_WAIT_S = 3.0


class Coverage:
    """The links' states and the coverage mark; the caller passes times in."""

    def __init__(self, replay: ReplayCheck, now_ms: int) -> None:
        self.replay = replay
        self.up: set[int] = set()
        self.live: set[int] = set()  # links not retired (every coin of theirs delisted)
        self.covered_ms = 0
        self.connected = False
        self.changed_ms = now_ms  # when `connected` last changed
        self._marks: dict[int, int] = {}
        self._replay_since_s = 0.0

    def on_connected(self, link: int, now_s: float) -> None:
        self.up.add(link)
        self._replay_since_s = now_s

    def on_mark(self, link: int, covered_ms: int) -> None:
        """Every frame `link` received before `covered_ms` has been handed over."""
        self._marks[link] = covered_ms

    def advance(self, now_ms: int, now_s: float, idle: bool) -> int:
        """The coverage mark, moved on if it may; `idle`: nothing waits for the tape."""
        all_up = bool(self.live) and self.live <= self.up
        if all_up and self.replay.any_pending() and now_s - self._replay_since_s > REPLAY_WAIT_S:
            self.replay.settle()
        if all_up and idle and not self.replay.any_pending():
            mark = min([self._marks.get(i, 0) for i in self.live])
            self.covered_ms = max(self.covered_ms, min(mark, now_ms))
        return self.covered_ms

    def is_connected(self, now_ms: int) -> bool:
        """Every live link is up (and one is); notes when that last changed."""
        connected = bool(self.up) and len(self.up) == len(self.live)
        if connected != self.connected:
            self.connected, self.changed_ms = connected, now_ms
        return connected
