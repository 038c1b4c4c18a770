"""How far the aggregator has applied the trade tape (`consumed[(coin, day)]`, a byte offset
per segment), and how it catches up from it. Ingest tapes every record before publishing it
and stamps the message with its span on the tape, so a message is:

    span.end <= consumed      SKIP: already applied (read from the tape on restart)
    span.start == consumed    APPLY as it came
    otherwise                 READ the tape from `consumed` to `span.end` (the bus lost some)
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from pathlib import Path

from hlstream.common.log import EventLog
from hlstream.common.messages import TapeSpan
from hlstream.common.tape.format import HEADER_BYTES, Record, TapePosition, segment_day
from hlstream.common.tape.readers_io import read_since, read_span

Consumed = dict[tuple[str, str], int]


class SpanAction(Enum):
    SKIP = "skip"
    APPLY = "apply"
    READ = "read"


class TapeFeed:
    """The consumed offsets of every segment, and readers that advance them."""

    def __init__(self, data_dir: Path, log: EventLog, consumed: Consumed | None = None) -> None:
        self.data_dir = data_dir
        self.log = log
        self.consumed: Consumed = dict(consumed or {})

    def positions(self, coin: str) -> list[TapePosition]:
        return [TapePosition(c, day, off) for (c, day), off in self.consumed.items() if c == coin]

    def replay(self, coin: str, from_ms: int) -> Iterator[Record]:
        """Everything of `coin` not yet applied: after the consumed positions, or, for a coin
        with none (first start, new coin), from the segment of `from_ms` on."""
        positions = self.positions(coin) or [TapePosition(coin, segment_day(from_ms), 0)]
        for record, position in read_since(self.data_dir, coin, positions, log=self.log):
            self.consumed[(coin, position.day)] = position.offset
            yield record

    def action(self, coin: str, span: TapeSpan) -> SpanAction:
        """What to do with a message whose records lie at `span` (the table above)."""
        consumed = self.consumed.get((coin, span.day), 0)
        if span.end <= consumed:
            return SpanAction.SKIP
        if span.start == max(consumed, len(HEADER_BYTES)):
            return SpanAction.APPLY
        return SpanAction.READ

    def read(self, coin: str, span: TapeSpan) -> Iterator[Record]:
        """The records the bus did not deliver, up to the end of `span`."""
        start = self.consumed.get((coin, span.day), 0)
        for record, position in read_span(
            self.data_dir, coin, span.day, start, span.end, log=self.log
        ):
            self.consumed[(coin, span.day)] = position.offset
            yield record

    def mark(self, coin: str, span: TapeSpan) -> None:
        """The message at `span` was applied as it came."""
        key = (coin, span.day)
        self.consumed[key] = max(self.consumed.get(key, 0), span.end)

    def prune(self, keep_from_day: str) -> None:
        """Forget segments older than `keep_from_day` (yesterday's still takes late trades)."""
        for key in [key for key in self.consumed if key[1] < keep_from_day]:
            del self.consumed[key]
