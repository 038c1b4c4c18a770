"""The fake exchange's fault switches: what the feed withholds and how /info misbehaves.

Read and written under the exchange's lock; FakeExchange's methods are the way to set them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class RestFault:
    """Answer the next `count` /info requests with HTTP `status` (0: normally, `delay_s` late)."""

    status: int
    count: int
    retry_after_s: float | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CandleFault:
    """How candleSnapshot serves one candle: with `edit`'s fields replaced (a venue that
    disagrees), absent until `published_ms` (a candle published late), or never (`missing`)."""

    edit: Mapping[str, object] = field(default_factory=dict)
    published_ms: int = 0
    missing: bool = False

    def served(self, now_ms: int) -> bool:
        return not self.missing and now_ms >= self.published_ms


CandleKey = tuple[str, str, int]  # (coin, interval, window start ms)


@dataclass(slots=True)
class Faults:
    """Every switch of one exchange; all off by default."""

    paused: bool = False  # no live trades at all
    # Connections stay open; nothing is read or sent. What the feed made meanwhile (and the
    # client's pings) is lost; switched off, the same connections resume.
    zombie: bool = False
    quiet: set[str] = field(default_factory=set)  # coins without live trades
    # Coins whose live trades of one tick share one time, as the venue stamps a block's trades.
    blocks: set[str] = field(default_factory=set)
    shuffled_replay: set[str] = field(default_factory=set)  # replays in random order
    # Coins (None: all) whose live trades are logged, so /info and replays have them, not sent.
    blackhole: set[str | None] = field(default_factory=set)
    # Coins whose candles are served with these fields replaced (a venue that disagrees).
    candle_edits: dict[str, dict[str, object]] = field(default_factory=dict)
    candle_faults: dict[CandleKey, CandleFault] = field(default_factory=dict)  # one candle each
    rest_now: RestFault = field(default_factory=lambda: RestFault(0, 0))  # before the queue
    rest_queue: deque[RestFault] = field(default_factory=deque)

    def is_sent(self, coin: str) -> bool:
        """Whether live trades of `coin` go out on open connections."""
        return coin not in self.blackhole and None not in self.blackhole

    def take_rest_fault(self) -> RestFault | None:
        """The fault the next /info request meets (spending one of its count), or None."""
        fault = self.rest_now if self.rest_now.count > 0 else None
        if fault is None and self.rest_queue:
            fault = self.rest_queue[0]
            if fault.count <= 1:
                self.rest_queue.popleft()
        if fault is not None:
            fault.count -= 1
        return fault

    def rest_pending(self) -> int:
        """Requests still to be failed or delayed."""
        return self.rest_now.count + sum(fault.count for fault in self.rest_queue)
