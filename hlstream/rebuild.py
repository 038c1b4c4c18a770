"""`hlstream rebuild`, the pure part: bars of any interval from the trade tape (through the
aggregator's own core, so byte-identical to the live rows), compared with a CSV file.

A window is *exact* when the tape covers it whole; an inexact window keeps the file's row
(the writer may have repaired it from the venue's candle), else gets the tape's bar. Rows
outside the tape's range are kept.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from hlstream.common.csvrow import Row
from hlstream.common.messages import Bar, Gap, Trade
from hlstream.common.tape.format import Record
from hlstream.common.timebucket import format_window
from hlstream.services.aggregator.core import advance, apply_trades, new_state, taint
from hlstream.verify import FileRow, Finding, hole, plural, scan_lines

CHUNK = 5_000
FIRST_ROW_LINE = 2  # line 1 is the header
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
    """Bars of `coin` for every window in `window` from the tape's `records`; `covered_from`:
    where the tape starts covering the coin; `seed_close`: the close before `from_ms` (without
    it, the bars start at the first trade's window)."""
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


def metered(
    records: Iterable[tuple[Record, int]], size: int, step: Callable[[int], None]
) -> Iterator[Record]:
    """The records of a tape segment of `size` bytes, given with the offset after each;
    `step(n)` reports the bytes read before each is yielded, `size` in all."""
    done = 0
    for record, offset in records:
        if offset > done:
            step(offset - done)
            done = offset
        yield record
    if size > done:
        step(size - done)


class Change(StrEnum):
    """How a rebuilt row relates to the file's row for the same window."""

    SAME = "same"
    DIFFERS = "differs"  # the file's row is wrong: the tape covers the window whole
    MISSING = "missing"  # the file has no row for the window
    KEPT = "kept"  # the tape cannot vouch for the window (gap, before coverage): row kept


@dataclass(slots=True)
class FileLines:
    """A CSV file as `verify` reads it: its rows in file order, and the lines that are not rows."""

    rows: list[FileRow] = field(default_factory=list)
    torn: Finding | None = None  # the last line has no newline: an interrupted append
    unparsed: list[Finding] = field(default_factory=list)  # whole lines that are not rows
    end_line: int = FIRST_ROW_LINE  # the line a row appended after the last one would get
    foreign: bool = False  # the file does not start with the header


def parse_lines(lines: Iterable[bytes]) -> FileLines:
    """The file of `lines` (header first) through verify's `scan_lines`."""
    out = FileLines()
    for item in scan_lines(lines):
        out.end_line = item.line + 1
        if isinstance(item, FileRow):
            out.rows.append(item)
        elif item.kind == "header" or item.line == 1:
            out.foreign = True
        elif item.kind == "torn":
            out.torn, out.end_line = item, item.line
        elif item.kind == "parse":
            out.unparsed.append(item)  # a `format` line still gives its row, not canonical
    return out


@dataclass(slots=True)
class Comparison:
    """The file's rows after a rebuild, and its defects as read: `findings` a rebuild repairs
    (by rewriting the file), `unsettled` the tape cannot settle, `unparsed` lines stop it."""

    rows: list[Row]
    changes: dict[int, Change]  # window start -> how the rebuilt row relates to the file's
    inexact: set[int]
    findings: list[Finding]
    unsettled: list[Finding]
    unparsed: list[Finding]

    def count(self, change: Change) -> int:
        return sum(1 for item in self.changes.values() if item is change)


def _show(row: Row) -> str:
    return ",".join((row.open, row.high, row.low, row.close, row.volume))


def _distinct(copies: list[FileRow]) -> list[FileRow]:
    """The first copy of each different row among the file's rows of one window."""
    first: dict[Row, FileRow] = {}
    for item in copies:
        first.setdefault(item.row, item)
    return list(first.values())


def _duplicates(copies: list[FileRow], settled: bool) -> Iterator[Finding]:
    first = copies[0]
    stamp = format_window(first.row.start_ms)
    for item in copies[1:]:
        if item.row == first.row:
            note = ""
        elif settled:
            note = f", differing from line {first.line}"
        else:
            note = f", differing from line {first.line}; the tape cannot tell which is right"
        yield Finding(item.line, "duplicate", f"{stamp} appears twice (line {first.line}{note})")


def _order(rows: list[FileRow]) -> Iterator[Finding]:
    """A row whose window comes before an earlier line's (a duplicate is reported as such)."""
    newest: int | None = None
    seen: set[int] = set()
    for item in rows:
        start = item.row.start_ms
        if newest is not None and start < newest and start not in seen:
            message = f"{format_window(start)} comes after {format_window(newest)}: not increasing"
            yield Finding(item.line, "order", message)
        seen.add(start)
        newest = start if newest is None else max(newest, start)


class _Places:
    """Where a window's row goes in the file as read: the line of the next row after it."""

    def __init__(self, file: FileLines) -> None:
        self._rows = sorted((item.row.start_ms, item.line) for item in file.rows)
        self._end_line = file.end_line

    def before(self, start: int) -> int | None:
        """The start of the file's last row before `start`, None if it has none."""
        index = bisect_left(self._rows, (start,))
        return self._rows[index - 1][0] if index else None

    def after(self, start: int) -> tuple[int, int] | None:
        """(start, line) of the file's first row after `start`, None if it has none."""
        index = bisect_right(self._rows, (start, math.inf))
        return self._rows[index] if index < len(self._rows) else None

    def line_of(self, start: int) -> int:
        nxt = self.after(start)
        return self._end_line if nxt is None else nxt[1]


def _missing(runs: list[list[int]], places: _Places) -> Iterator[Finding]:
    """One finding per run of windows the file lacks: a hole between rows, else missing."""
    for run in runs:
        first, last = run[0], run[-1]
        before, after = places.before(first), places.after(last)
        if before is not None and after is not None:
            count = plural(len(run), "missing window")
            between = f"between {format_window(before)} and {format_window(after[0])}"
            yield Finding(after[1], "hole", f"{count} {between}")
        elif len(run) == 1:
            yield Finding(
                places.line_of(last), "missing", f"{format_window(first)} is not in the file"
            )
        else:
            span = f"{format_window(first)} to {format_window(last)}"
            message = f"{plural(len(run), 'window')} from {span} are not in the file"
            yield Finding(places.line_of(last), "missing", message)


def _runs(starts: list[int], interval_ms: int) -> list[list[int]]:
    runs: list[list[int]] = []
    for start in starts:
        if runs and start - runs[-1][-1] == interval_ms:
            runs[-1].append(start)
        else:
            runs.append([start])
    return runs


def _unsettled_holes(rows: list[tuple[int, int, Row]], interval_ms: int) -> Iterator[Finding]:
    """Holes left after the rebuild: between rows the tape does not reach."""
    for (before, _, _), (after, line, _) in zip(rows, rows[1:], strict=False):
        if after - before > interval_ms:
            message = f"{hole(before, after, interval_ms)}: the tape does not reach there"
            yield Finding(line, "hole", message)


def compare(file: FileLines, rebuilt: list[Row], inexact: set[int], interval_ms: int) -> Comparison:
    """Every defect of `file` against the tape's `rebuilt` rows, and the rows a rebuild writes,
    in window order: the tape's inside its range unless `inexact` where the file has rows;
    outside, the file's (identical copies become one). A torn last line is cut."""
    by_start: dict[int, list[FileRow]] = {}
    for item in file.rows:
        by_start.setdefault(item.row.start_ms, []).append(item)
    fresh = {row.start_ms: row for row in rebuilt}
    low = rebuilt[0].start_ms if rebuilt else 0
    high = rebuilt[-1].start_ms + interval_ms if rebuilt else 0
    places = _Places(file)
    findings = list(_order(file.rows))
    unsettled: list[Finding] = []
    out: list[tuple[int, int, Row]] = []  # (start, line, row): window order, then file order
    for start, copies in by_start.items():
        if start in fresh:
            continue
        if low <= start < high:  # inside the tape's range, yet not one of its windows
            for item in copies:
                message = f"{format_window(start)} is not the start of a window"
                findings.append(Finding(item.line, "extra", message))
            continue
        kept = _distinct(copies)
        (findings if len(kept) == 1 else unsettled).extend(_duplicates(copies, len(kept) == 1))
        out.extend((start, item.line, item.row) for item in kept)
    changes: dict[int, Change] = {}
    absent: list[int] = []
    for start, new in fresh.items():
        copies = by_start.get(start, [])
        kept = _distinct(copies)
        if not copies:
            kind = Change.MISSING
            absent.append(start)
            out.append((start, places.line_of(start), new))
        elif start in inexact:
            kind = Change.SAME if [item.row for item in kept] == [new] else Change.KEPT
            target = findings if len(kept) == 1 else unsettled
            target.extend(_duplicates(copies, len(kept) == 1))
            out.extend((start, item.line, item.row) for item in kept)
        else:
            wrong = [item for item in copies if item.row != new or not item.canonical]
            kind = Change.DIFFERS if wrong else Change.SAME
            findings.extend(_duplicates(copies, settled=True))
            findings.extend(_differs(item, new) for item in wrong)
            out.append((start, copies[0].line, new))
        changes[start] = kind
    findings.extend(_missing(_runs(absent, interval_ms), places))
    if file.torn is not None:
        findings.append(file.torn)
    out.sort(key=lambda entry: (entry[0], entry[1]))
    unsettled.extend(_unsettled_holes(out, interval_ms))
    findings.sort(key=lambda finding: finding.line)
    unsettled.sort(key=lambda finding: finding.line)
    return Comparison(
        [row for _, _, row in out], changes, inexact, findings, unsettled, file.unparsed
    )


def _differs(item: FileRow, new: Row) -> Finding:
    stamp = format_window(new.start_ms)
    if item.row == new:
        return Finding(item.line, "differs", f"{stamp}: not written as the writer writes it")
    return Finding(item.line, "differs", f"{stamp}: file {_show(item.row)} tape {_show(new)}")


def journal_after(merge: Comparison, journal: dict[int, str]) -> dict[int, str]:
    """The inexact-row journal once the merge is written: rows now taken from a tape that
    covers them whole are exact; tape bars written where the tape has a gap are not."""
    out = dict(journal)
    for start, change in merge.changes.items():
        if start not in merge.inexact:
            out.pop(start, None)
        elif change is Change.MISSING:
            out[start] = "partial"
    return out
