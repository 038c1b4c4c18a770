"""Time for the shells: the one wall-clock reader, and the Clock seam tests replace (cores
take `now_ms` values)."""

from __future__ import annotations

import time
from typing import Protocol


def now_ms() -> int:
    """The wall clock in int epoch milliseconds (UTC)."""
    return time.time_ns() // 1_000_000


class Clock(Protocol):
    """Where a shell gets the time: wall-clock ms for bar windows, monotonic s for timers."""

    def now_ms(self) -> int: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now_ms(self) -> int:
        return now_ms()

    def monotonic(self) -> float:
        return time.monotonic()
