"""Per-topic sequence tracking, pure: ZeroMQ PUB drops silently when a subscriber's queue is
full, so a jump in `seq` is the only sign of lost messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class SeqEvent(Enum):
    FIRST = "first"  # first message seen on this topic
    OK = "ok"  # exactly the next sequence number
    RESTART = "restart"  # the publisher's session changed (process restarted)
    LOSS = "loss"  # sequence numbers were skipped: bus messages were lost (not a venue gap)
    STALE = "stale"  # a repeated or older sequence number


@dataclass
class SeqTracker:
    """Remembers the last (session, seq) per topic."""

    last: dict[str, tuple[str, int]] = field(default_factory=dict)
    lost: int = 0

    def observe(self, topic: str, session: str, seq: int) -> tuple[SeqEvent, int]:
        """Record a message; return the event and how many messages were skipped."""
        previous = self.last.get(topic)
        if previous is None:
            self.last[topic] = (session, seq)
            return SeqEvent.FIRST, 0
        last_session, last_seq = previous
        if session != last_session:
            self.last[topic] = (session, seq)
            return SeqEvent.RESTART, 0
        if seq <= last_seq:
            return SeqEvent.STALE, 0
        self.last[topic] = (session, seq)
        skipped = seq - last_seq - 1
        if skipped:
            self.lost += skipped
            return SeqEvent.LOSS, skipped
        return SeqEvent.OK, 0
