"""Pure health of one websocket link: when to ping, when it is dead, when to connect again
(`now_s` passed in).

- A ping unanswered for `pong_timeout_s` means the link is dead, even if other frames arrive
  meanwhile: a feed that loses frames and then resumes on the same socket loses the ping too,
  and only its pong proves the frames before it were all delivered. While a ping awaits its
  pong the link vouches for nothing new: a silence is proven quiet by the pong or ends the link.
- A link that died silent reports a gap over the silence for each of its trade coins: the
  frames it lost are unknown, whether or not the replay on reconnect overlaps.
- The first connect waits only for the connect window the process's links share (venue: 30
  new connections a minute per IP), each later one at least the next backoff delay; no 60 s
  window ever holds more than `limit` connects; the backoff resets only once a connection has
  been up `healthy_after_s` AND delivered data, so a server that accepts and then drops us
  keeps backing off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hlstream.common.backoff import Backoff, WindowLimit
from hlstream.common.messages import Gap

PONG_TIMEOUT = "pong_timeout"
STALE = "stale"
SILENCE_GAP_REASON = "silent_link"
# A trade stamped this long before the last frame arrived may still have been on its way.
SILENCE_SKEW_MS = 1_000
# Short enough that drops a few seconds apart do not stack up delays longer than the
# ~30-trade replay covers (which would turn every drop into a gap); the 30 connects/min
# window still bounds a server that accepts and drops us in a loop.
HEALTHY_AFTER_S = 5.0


@dataclass(slots=True)
class Liveness:
    """One connection's ping and pong bookkeeping; `start` it when the connection opens."""

    idle_ping_s: float
    pong_timeout_s: float
    ping_every_s: float  # a ping this often in any case keeps the venue from dropping us
    stale_s: float
    last_rx_s: float = 0.0  # when the last frame (of any kind) arrived
    last_ping_s: float = 0.0
    awaiting_since_s: float | None = None  # the oldest ping still without its pong

    def start(self, now_s: float) -> None:
        self.last_rx_s = self.last_ping_s = now_s
        self.awaiting_since_s = None

    def on_frames(self, now_s: float, pong: bool) -> None:
        """Frames arrived; `pong`: one of them answers our ping."""
        self.last_rx_s = now_s
        if pong:
            self.awaiting_since_s = None

    def should_ping(self, now_s: float) -> bool:
        idle = self.awaiting_since_s is None and now_s - self.last_rx_s >= self.idle_ping_s
        return idle or now_s - self.last_ping_s >= self.ping_every_s

    def on_ping_sent(self, now_s: float) -> None:
        self.last_ping_s = now_s
        if self.awaiting_since_s is None:
            self.awaiting_since_s = now_s

    def verdict(self, now_s: float) -> str | None:
        """Why the link is dead (PONG_TIMEOUT, STALE), or None while it is alive."""
        awaiting = self.awaiting_since_s
        if awaiting is not None and now_s - awaiting >= self.pong_timeout_s:
            return PONG_TIMEOUT
        if now_s - self.last_rx_s >= self.stale_s:
            return STALE
        return None

    def vouches(self) -> bool:
        return self.awaiting_since_s is None

    def silent_s(self, now_s: float) -> float:
        return now_s - self.last_rx_s


def silence_gaps(coins: Iterable[str], last_rx_ms: int, dead_ms: int) -> list[Gap]:
    """Gap markers over a dead link's silence, from its last frame (less the skew) to now."""
    from_ms = last_rx_ms - SILENCE_SKEW_MS
    return [Gap(coin, from_ms, max(from_ms, dead_ms), SILENCE_GAP_REASON) for coin in coins]


@dataclass
class ReconnectPolicy:
    """Backoff + shared connect limit + healthy-period tracking for one connection."""

    backoff: Backoff
    connect_limit: WindowLimit
    healthy_after_s: float = HEALTHY_AFTER_S
    _connected_s: float | None = None
    _data_seen: bool = False
    _connects: int = 0

    def delay_s(self, now_s: float) -> float:
        """Seconds to wait before the next connect attempt."""
        window_wait = self.connect_limit.wait_s(now_s)
        if self._connects == 0:
            return window_wait
        return max(self.backoff.next_delay(), window_wait)

    def grant(self, now_s: float) -> float:
        """Record a connect at `now_s` and return 0, or return how long to wait first."""
        wait = self.connect_limit.take(now_s)
        if wait > 0:
            return wait
        self._connects += 1
        self._connected_s = now_s
        self._data_seen = False
        return 0.0

    def on_frame(self, now_s: float, is_data: bool) -> bool:
        """A frame arrived; True when this makes the connection healthy (backoff reset)."""
        if self._connected_s is None:
            return False
        self._data_seen = self._data_seen or is_data
        if self._data_seen and now_s - self._connected_s >= self.healthy_after_s:
            self.backoff.reset()
            self._connected_s = None
            return True
        return False

    def on_disconnect(self) -> None:
        """The connection ended (or failed to open): the next frame is not from it."""
        self._connected_s = None
        self._data_seen = False
