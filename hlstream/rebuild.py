"""`hlstream rebuild`, the pure part: bars of any interval from the trade tape, merged into
the rows of an existing CSV file.

The bars come from the aggregator's own core (services/aggregator/core.py), so a rebuilt
row is byte-identical to the row the live pipeline wrote for the same trades. A window is
*exact* when the tape covers it whole: from the tape's first trade on, and no gap marker
overlaps it. Windows that are not exact keep the row already in the file (the writer may
have repaired a 1m row from the exchange's candle); with no row there, the tape's bar is
used and reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from hlstream.common.csvrow import Row
from hlstream.common.messages import Bar, Gap, Trade
from hlstream.common.tape import Record
from hlstream.common.timebucket import bucket_start
from hlstream.services.aggregator.core import advance, apply_trades, new_state, taint
from hlstream.services.writer.core import row_of

CHUNK = 5_000
LATE_SLACK_MS = 60_000  # tape lines are near time order; windows close this far behind


@dataclass(frozen=True, slots=True)
class Window:
    """A requested range of whole windows: from_ms <= start < to_ms."""

    interval: str
    interval_ms: int
    from_ms: int
    to_ms: int


@dataclass(slots=True)
class TapeBars:
    """What the tape says about a range: bars in window order, and the inexact windows."""

    bars: list[Bar] = field(default_factory=list)
    late: int = 0  # tape lines further out of order than LATE_SLACK_MS (none expected)

    def inexact(self) -> set[int]:
        return {bar.start_ms for bar in self.bars if not bar.complete}


def tape_bars(
    coin: str,
    window: Window,
    records: Iterable[Record],
    covered_from: int | None,
    seed_close: str | None,
) -> TapeBars:
    """Bars of `coin` for every window in `window` from the tape's `records`.

    `covered_from`: when the tape starts covering the coin (`coverage_start`), None if empty.
    `seed_close`: the close before `window.from_ms`, so the first windows can be carried
    forward; without it the bars start at the window of the first trade.
    """
    state = new_state((coin,), {window.interval: window.interval_ms}, 0, window.from_ms)
    state.joined_by_coin[coin] = window.to_ms if covered_from is None else covered_from
    series = state.series[(coin, window.interval)]
    series.closed_through = window.from_ms
    if seed_close is not None:
        series.last_close, series.next_start = seed_close, window.from_ms
    out = TapeBars()
    batch: list[Trade] = []
    newest = window.from_ms

    def flush() -> None:
        out.late += len(apply_trades(state, batch))
        batch.clear()
        out.bars.extend(advance(state, min(newest - LATE_SLACK_MS, window.to_ms)))

    for record in records:
        if isinstance(record, Gap):
            flush()
            taint(state, coin, record.from_ms, record.to_ms)
        elif window.from_ms <= record.ts_ms < window.to_ms:
            batch.append(record)
            newest = max(newest, record.ts_ms)
            if len(batch) >= CHUNK:
                flush()
    flush()
    out.bars.extend(advance(state, window.to_ms))
    return out


class Change(StrEnum):
    """How a rebuilt row relates to the file's row for the same window."""

    SAME = "same"
    DIFFERS = "differs"  # the file's row is wrong: the tape covers the window whole
    MISSING = "missing"  # the file has no row for the window
    KEPT = "kept"  # the tape cannot vouch for the window (gap, before coverage): row kept


@dataclass(frozen=True, slots=True)
class RowChange:
    start_ms: int
    change: Change
    old: Row | None
    new: Row | None


@dataclass(slots=True)
class Merge:
    """The file's rows after the rebuild, and what changed."""

    rows: list[Row]
    changes: list[RowChange]
    inexact: set[int] = field(default_factory=set)  # windows the tape cannot vouch for

    def count(self, change: Change) -> int:
        return sum(1 for item in self.changes if item.change is change)

    def differing(self) -> list[RowChange]:
        return [c for c in self.changes if c.change in (Change.DIFFERS, Change.MISSING)]


def merge_rows(existing: list[Row], rebuilt: TapeBars, window: Window) -> Merge:
    """Rows outside the window stay as they are; inside it, exact tape bars replace rows."""
    inexact = rebuilt.inexact()
    by_start = {row.start_ms: row for row in existing}
    fresh = {bar.start_ms: row_of(bar) for bar in rebuilt.bars}
    changes: list[RowChange] = []
    merged = dict(by_start)
    for start, new in fresh.items():
        old = by_start.get(start)
        if start in inexact and old is not None:
            kind = Change.SAME if old == new else Change.KEPT
        elif old is None:
            kind, merged[start] = Change.MISSING, new
        else:
            kind, merged[start] = (Change.SAME if old == new else Change.DIFFERS), new
        changes.append(RowChange(start, kind, old, new))
    return Merge([merged[start] for start in sorted(merged)], changes, inexact)


def journal_after(merge: Merge, journal: dict[int, str]) -> dict[int, str]:
    """The inexact-row journal once the merge is written: rows now taken from a tape that
    covers them whole are exact; tape bars written where the tape has a gap are not."""
    out = dict(journal)
    for item in merge.changes:
        if item.change is Change.KEPT:
            continue
        if item.start_ms in merge.inexact:
            if item.change is Change.MISSING:
                out[item.start_ms] = "partial"
        else:
            out.pop(item.start_ms, None)
    return out


def holes(rows: list[Row], interval_ms: int) -> Iterator[tuple[int, int]]:
    """(previous start, next start) for every place the rows are not one window apart."""
    for before, after in zip(rows, rows[1:], strict=False):
        if after.start_ms - before.start_ms != interval_ms:
            yield before.start_ms, after.start_ms


def aligned_range(interval_ms: int, from_ms: int, to_ms: int) -> tuple[int, int]:
    """[from, to) widened/narrowed to whole windows: from rounds down, to rounds down."""
    return bucket_start(from_ms, interval_ms), bucket_start(to_ms, interval_ms)
