"""The fake exchange's fault switches, read and written under the exchange's lock."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from hlstream.sim.market import Candle


@dataclass(slots=True)
class RestFault:
    """Answer the next `count` /info requests with HTTP `status` (0: normally, `delay_s` late)."""

    status: int
    count: int  # >= 1
    retry_after_s: float | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CandleFault:
    """How candleSnapshot serves one candle: with `edit`'s fields replaced (a venue that
    disagrees), absent until `published_ms` (a candle published late), or never (`missing`)."""

    edit: Mapping[str, object] = field(default_factory=dict)
    published_ms: int = 0
    missing: bool = False


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
    candle_edits: dict[str, dict[str, object]] = field(default_factory=dict)  # per coin
    candle_faults: dict[CandleKey, CandleFault] = field(default_factory=dict)  # one candle each
    rest_queue: deque[RestFault] = field(default_factory=deque)  # met in order

    def is_sent(self, coin: str) -> bool:
        """Whether live trades of `coin` go out on open connections."""
        return coin not in self.blackhole and None not in self.blackhole

    def serve(self, candle: Candle, now_ms: int) -> dict[str, object] | None:
        """`candle` as its coin's edit and its own fault serve it: None while it is withheld."""
        fault = self.candle_faults.get((candle["s"], candle["i"], candle["t"]), CandleFault())
        if fault.missing or now_ms < fault.published_ms:
            return None
        return {**candle, **self.candle_edits.get(candle["s"], {}), **fault.edit}

    def take_rest_fault(self) -> RestFault | None:
        """The fault the next /info request meets (spending one of its count), or None."""
        if not self.rest_queue:
            return None
        fault = self.rest_queue[0]
        fault.count -= 1
        if fault.count <= 0:
            self.rest_queue.popleft()
        return fault

    def rest_pending(self) -> int:
        """Requests still to be failed or delayed."""
        return sum(fault.count for fault in self.rest_queue)
