"""Trade counts of bar rows read from the trade tape (the relay's source for `trades`).

Each coin-day segment gets an index of `TimeMarks`, extended as the segment grows, so a
batch of rows is read in one pass from a mark just before its oldest window rather than
from the start of the day.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from hlstream.common.csvrow import Row
from hlstream.common.messages import Trade
from hlstream.common.tape.format import segment_day
from hlstream.common.tape.readers_io import read_span, segment_days
from hlstream.common.timebucket import bucket_start
from hlstream.services.relay.tradecount import TimeMarks, WindowTrades

MARK_EVERY = 2_048  # records between two marks
MAX_INDEXED_DAYS = 256  # segment indexes kept (oldest dropped first)
_TO_END = 1 << 62


@dataclass
class _DayIndex:
    end: int = 0  # bytes indexed (whole records)
    newest: int = -1  # newest trade time before `end`
    records: int = 0
    marks: TimeMarks = field(default_factory=TimeMarks)


class TapeCounts:
    """Counts the trades of bar rows from the tape in `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._days: dict[tuple[str, str], _DayIndex] = {}

    def counts(self, coin: str, interval_ms: int, rows: Sequence[Row]) -> list[int | None]:
        """The trades that made each row (windows of `interval_ms`), None where unknown.

        One pass over the tape from the mark before the oldest window to the segment's end:
        a late trade may lie anywhere after its window's start.
        """
        if not rows:
            return []
        found = {row.start_ms: WindowTrades() for row in rows}
        first, end = min(found), max(found) + interval_ms
        first_day, last_day = segment_day(first), segment_day(end - 1)
        for day in segment_days(self._data_dir, coin):
            if first_day <= day <= last_day:
                for trade in self._trades(coin, day, first):
                    window = found.get(bucket_start(trade.ts_ms, interval_ms))
                    if window is not None:
                        window.add(trade)
        return [found[row.start_ms].count_for(row) for row in rows]

    def _trades(self, coin: str, day: str, start: int) -> Iterator[Trade]:
        """The day's trades, read from the mark before `start` on."""
        index = self._index(coin, day)
        for record, _ in read_span(
            self._data_dir, coin, day, index.marks.start_for(start), _TO_END
        ):
            if isinstance(record, Trade):
                yield record

    def _index(self, coin: str, day: str) -> _DayIndex:
        """The index of the coin-day, brought up to the segment's current end."""
        index = self._days.get((coin, day))
        if index is None:
            if len(self._days) >= MAX_INDEXED_DAYS:
                del self._days[next(iter(self._days))]
            index = self._days[(coin, day)] = _DayIndex()
        for record, position in read_span(self._data_dir, coin, day, index.end, _TO_END):
            if isinstance(record, Trade):
                index.newest = max(index.newest, record.ts_ms)
            index.records += 1
            index.end = position.offset
            if index.records % MARK_EVERY == 0:
                index.marks.add(index.end, index.newest)
        return index


@lru_cache(maxsize=8)
def tape_counts(data_dir: Path) -> TapeCounts:
    """One `TapeCounts` per data dir, shared by every sink of the process."""
    return TapeCounts(data_dir)
