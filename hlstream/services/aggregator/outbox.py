"""Bars handed to the writer but not yet acked (fsynced or already on disk). Pure.
Only the oldest un-acked bar of a series is in flight, so a restarted writer never sees a
later bar before an earlier one (it would take that for a hole); it is resent every
`resend_ms`. Past `max_bars` the oldest bar is dropped and counted (the writer repairs the
hole from REST)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SeriesKey = tuple[str, str]  # (coin, interval)
BarKey = tuple[str, str, int]  # (coin, interval, start_ms)


@dataclass
class _Queue:
    bars: deque[tuple[int, bytes]] = field(default_factory=deque)
    sent_ms: int | None = None  # when the head was last sent; None = not sent yet


@dataclass
class Outbox:
    """Per-series FIFO queues of un-acked bars."""

    resend_ms: int = 2_000
    max_bars: int = 200_000
    queues: dict[SeriesKey, _Queue] = field(default_factory=dict)
    size: int = 0
    dropped: int = 0
    resent: int = 0

    def add(self, key: BarKey, payload: bytes) -> None:
        queue = self.queues.setdefault((key[0], key[1]), _Queue())
        queue.bars.append((key[2], payload))
        self.size += 1
        if self.size > self.max_bars:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        longest = max(self.queues.values(), key=lambda q: len(q.bars))
        longest.bars.popleft()
        longest.sent_ms = None
        self.size -= 1
        self.dropped += 1

    def ack(self, key: BarKey) -> bool:
        """The writer made `key` durable: drop it and every older bar of its series."""
        queue = self.queues.get((key[0], key[1]))
        if queue is None or not queue.bars or queue.bars[0][0] > key[2]:
            return False
        while queue.bars and queue.bars[0][0] <= key[2]:
            queue.bars.popleft()
            self.size -= 1
        queue.sent_ms = None
        return True

    def payloads(self) -> list[bytes]:
        """Every un-acked bar, oldest first per series (for the checkpoint)."""
        return [payload for queue in self.queues.values() for _, payload in queue.bars]

    def due(self, now_ms: int) -> list[tuple[BarKey, bytes]]:
        """Series heads never sent, or sent more than `resend_ms` ago; marks them sent."""
        out: list[tuple[BarKey, bytes]] = []
        for series, queue in self.queues.items():
            if not queue.bars:
                continue
            if queue.sent_ms is not None and now_ms - queue.sent_ms < self.resend_ms:
                continue
            if queue.sent_ms is not None:
                self.resent += 1
            queue.sent_ms = now_ms
            start_ms, payload = queue.bars[0]
            out.append(((series[0], series[1], start_ms), payload))
        return out
