"""Pure reconnect policy of one websocket connection: backoff (RNG injected) plus a connect
`WindowLimit` the process's connections share (venue: 30 new connections a minute per IP).
The first connect waits only for the window, each later one at least the next backoff delay;
no 60 s window ever holds more than `limit` connects, whatever delays the caller chose; the
backoff resets only once a connection has been up `healthy_after_s` AND delivered data, so a
server that accepts and then drops us keeps backing off.
"""

from __future__ import annotations

from dataclasses import dataclass

from hlstream.common.backoff import Backoff, WindowLimit

# Short enough that drops a few seconds apart do not stack up delays longer than the
# ~30-trade replay covers (which would turn every drop into a gap); the 30 connects/min
# window still bounds a server that accepts and drops us in a loop.
HEALTHY_AFTER_S = 5.0


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
