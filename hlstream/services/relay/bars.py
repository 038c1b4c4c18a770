"""The relay's bars, pure: the per-file progress, and which bars to send for what is
new in a bar file, its `.inexact` journal and its `.revisions` (common/revisions.py).

Revision numbers: a window's first bar is revision `generation` (0 until a replaced file had to
be re-sent whole); every later change the relay sends for it (a journal entry after the row was
sent, a `.revisions` line, a row that differs in a rewritten file) is one higher. They are
counted in `FileProgress.bumps`, which is saved with the offsets only after the sink acked, so
a bar re-sent after a crash keeps its number and its message id (the stream dedupes it).

What the relay last sent for each window is known without keeping every row: the file's row,
unless `revised` holds the values of a `.revisions` line sent after it; exact unless the
window is in `inexact`. A change is sent only when it differs from that (decimals compare by
value), so a `.revisions` line already applied, or a file rewritten by `hlstream repair`,
sends nothing for a window whose bar is already right.

A revision's bar is the venue's candle and is sent with exact=true: the venue's own record of
the window is the reference every row is audited against.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping
from decimal import Decimal

from hlstream.common.csvrow import Row, parse_row
from hlstream.common.revisions import Revision
from hlstream.services.relay.core import FileProgress, JsBar, Values


def parse_bar_lines(data: bytes) -> Iterator[tuple[Row, int]]:
    """Whole data lines of `data` (a CSV file's bytes from some offset) with the offset just
    after each, relative to `data`; the header line and an unfinished last line are skipped."""
    offset = 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            return
        offset += len(raw)
        if raw.startswith(b"Datetime,"):
            continue
        yield parse_row(raw.decode("ascii")), offset


def js_bar(
    coin: str, interval: str, start_ms: int, values: Values, exact: bool, revision: int
) -> JsBar:
    return JsBar(coin, interval, start_ms, *values, None, exact, revision)


def same_values(a: Values, b: Values) -> bool:
    """Equal as decimals (`1.50` is `1.5`)."""
    return all(Decimal(x) == Decimal(y) for x, y in zip(a, b, strict=True))


class BarPlan:
    """The bars to send for one file, built on a copy of its progress (`state`), which is the
    progress to save once the sink acked them."""

    def __init__(self, coin: str, interval: str, state: FileProgress) -> None:
        self.coin = coin
        self.interval = interval
        self.state = state.copy()
        self.bars: list[JsBar] = []

    def _emit(self, start_ms: int, values: Values, exact: bool, changed: bool) -> None:
        s = self.state
        if changed:
            s.bumps[start_ms] = s.bumps.get(start_ms, 0) + 1
        if exact:
            s.inexact.discard(start_ms)
        else:
            s.inexact.add(start_ms)
        revision = s.revision(start_ms)
        self.bars.append(js_bar(self.coin, self.interval, start_ms, values, exact, revision))

    def sent_values(self, start_ms: int, rows: Mapping[int, Row]) -> Values | None:
        """The values last sent for a window (None when it was never sent)."""
        if start_ms in self.state.revised:
            return self.state.revised[start_ms]
        row = rows.get(start_ms)
        return row.values if row is not None and start_ms <= self.state.last_start_ms else None

    def new_rows(self, rows: Iterable[tuple[Row, int]], journal: Container[int]) -> None:
        """Rows appended since the saved offset (`int`: the file offset after each)."""
        s = self.state
        for row, end in rows:
            self._emit(row.start_ms, row.values, row.start_ms not in journal, False)
            s.offset = end
            s.last_start_ms = max(s.last_start_ms, row.start_ms)

    def flips(self, starts: Iterable[int], rows: Mapping[int, Row]) -> None:
        """Journal entries appended since the saved offset: a window already sent exact is
        sent again, exact=false, with the values it was sent with."""
        for start in sorted(set(starts)):
            values = self.sent_values(start, rows)
            if values is not None and start not in self.state.inexact:
                self._emit(start, values, False, True)

    def revisions(self, revisions: Iterable[Revision], rows: Mapping[int, Row]) -> None:
        """`.revisions` lines appended since the saved offset, in file order."""
        for revision in revisions:
            start = revision.new.start_ms
            new = (revision.new.open, revision.new.high, revision.new.low, revision.new.close,
                   revision.new.volume)  # fmt: skip
            sent = self.sent_values(start, rows)
            if sent is not None and same_values(sent, new) and start not in self.state.inexact:
                continue
            self._emit(start, new, True, sent is not None)
            self.state.revised[start] = new

    def rewritten(
        self,
        old: Mapping[int, Row],
        rows: Iterable[tuple[Row, int]],
        journal: Container[int],
    ) -> None:
        """A file replaced by rebuild/repair (`old`: the rows the replaced file held up to the
        saved offset): only windows whose values or exactness differ from what was sent go
        again, one revision higher; windows the old file lacked go as new."""
        s = self.state
        for row, end in rows:
            start = row.start_ms
            exact = start not in journal
            sent = self.sent_values(start, old)
            if sent is None:
                self._emit(start, row.values, exact, False)
            elif not same_values(sent, row.values) or exact == (start in s.inexact):
                self._emit(start, row.values, exact, True)
            s.revised.pop(start, None)  # the file now holds what was sent
            s.offset = end
            s.last_start_ms = max(s.last_start_ms, start)

    def resend_all(self, rows: Iterable[tuple[Row, int]], journal: Container[int]) -> None:
        """A file replaced while the old one cannot be read: every row again, one generation
        higher (the sinks' dedupe of equal values is all that spares unchanged windows)."""
        s = self.state
        s.generation += 1
        s.offset = 0
        s.last_start_ms = -1
        s.revised.clear()
        self.new_rows(rows, journal)
