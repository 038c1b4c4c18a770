"""Capped exponential backoff with jitter, a sliding-window rate limit and a weight budget; the
caller passes the RNG and clock readings, so schedules are reproducible."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay n is uniform in [d/2, d] with d = min(cap, base * 2**n) ("equal jitter")."""

    base_s: float
    cap_s: float
    rng: random.Random
    attempt: int = 0

    def next_delay(self, floor_s: float = 0.0) -> float:
        """The delay before the next attempt; at least `floor_s` (e.g. a Retry-After)."""
        ceiling = min(self.cap_s, self.base_s * float(2 ** min(self.attempt, 32)))
        self.attempt += 1
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        return float(max(delay, floor_s))

    def reset(self) -> None:
        """Call after a healthy period, not merely after a successful connect."""
        self.attempt = 0


@dataclass
class WindowLimit:
    """At most `limit` events per `window_s` seconds (e.g. 30 new connections a minute)."""

    limit: int
    window_s: float
    events: deque[float] = field(default_factory=deque)

    def wait_s(self, now_s: float) -> float:
        """How long to wait from `now_s` before one more event is allowed."""
        while self.events and now_s - self.events[0] >= self.window_s:
            self.events.popleft()
        if len(self.events) < self.limit:
            return 0.0
        return self.events[0] + self.window_s - now_s

    def take(self, now_s: float) -> float:
        """Record one event at `now_s` and return 0, or return how long to wait first."""
        wait = self.wait_s(now_s)
        if wait <= 0:
            self.events.append(now_s)
        return wait


@dataclass
class WeightBudget:
    """A token bucket of REST weight: `per_minute` refills linearly (exchange: 1200/min/IP)."""

    per_minute: float
    tokens: float = field(init=False)  # full at first
    updated_s: float | None = None  # when `tokens` was last brought up to date

    def __post_init__(self) -> None:
        self.tokens = self.per_minute

    def wait_s(self, weight: float, now_s: float) -> float:
        """Seconds to wait before spending `weight`; 0 when it can be spent now."""
        self._refill(now_s)
        if self.tokens >= weight:
            return 0.0
        return (weight - self.tokens) * 60.0 / self.per_minute

    def spend(self, weight: float, now_s: float) -> None:
        self._refill(now_s)
        self.tokens -= weight

    def _refill(self, now_s: float) -> None:
        if self.updated_s is not None:
            elapsed = max(0.0, now_s - self.updated_s)
            self.tokens = min(self.per_minute, self.tokens + elapsed * self.per_minute / 60.0)
        self.updated_s = now_s
