"""How many trades made a bar row, from the tape's trades in its window (pure).

A row's trade count is known only when the tape's trades found in its window account for
the row exactly: their sizes sum to its volume and, when there are any, their prices span
its high and low. Sizes are positive, so a trade the tape lacks (the row came from the venue
before the tape began, or the tape has a gap) makes the sum smaller, and the count is then
unknown (None), never a guess. A window with volume 0 had no trades.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal

from hlstream.common.csvrow import Row
from hlstream.common.messages import Trade


class WindowTrades:
    """The tape's trades found in one window: how many, their volume and price range."""

    __slots__ = ("count", "high", "low", "volume")

    def __init__(self) -> None:
        self.count = 0
        self.volume = Decimal(0)
        self.high: Decimal | None = None
        self.low: Decimal | None = None

    def add(self, trade: Trade) -> None:
        price = Decimal(trade.price)
        self.count += 1
        self.volume += Decimal(trade.size)
        if self.high is None or price > self.high:
            self.high = price
        if self.low is None or price < self.low:
            self.low = price

    def count_for(self, row: Row) -> int | None:
        """The count, if these trades are exactly the trades of `row`; else None."""
        if self.volume != Decimal(row.volume):
            return None
        if self.count and (self.high != Decimal(row.high) or self.low != Decimal(row.low)):
            return None
        return self.count


class TimeMarks:
    """Byte offsets into one tape segment, each with the newest trade time before it.

    The segment is in append order, not time order (a late trade lands after newer ones),
    but the newest time before an offset only grows along the file; so every trade at or
    after `start_ms` lies after `start_for(start_ms)`.
    """

    def __init__(self) -> None:
        self._offsets: list[int] = []
        self._newest: list[int] = []

    def add(self, offset: int, newest_before: int) -> None:
        """Record a mark; offsets and times must not decrease."""
        self._offsets.append(offset)
        self._newest.append(newest_before)

    def start_for(self, start_ms: int) -> int:
        """The latest marked offset before which every trade is older than `start_ms`."""
        i = bisect_left(self._newest, start_ms)
        return self._offsets[i - 1] if i else 0
