"""The CSV row format (docs/data.md), shared by the writer, `verify`, `rebuild` and `repair`:
the header, then per window its UTC start and open/high/low/close/volume as decimal strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from hlstream.common.decimals import parse_decimal
from hlstream.common.errors import IntegrityError
from hlstream.common.messages import Bar
from hlstream.common.timebucket import format_window, parse_window

HEADER = "Datetime,Open,High,Low,Close,Volume"
HEADER_LINE = HEADER + "\n"


@dataclass(frozen=True, slots=True)
class Row:
    """One parsed CSV row."""

    start_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str

    @property
    def values(self) -> tuple[str, str, str, str, str]:
        """(open, high, low, close, volume) as written."""
        return (self.open, self.high, self.low, self.close, self.volume)


def format_row(row: Bar | Row) -> str:
    """The CSV line (with trailing newline) of a bar or row."""
    fields = (format_window(row.start_ms), row.open, row.high, row.low, row.close, row.volume)
    return ",".join(fields) + "\n"


def parse_row(line: str) -> Row:
    """Parse one CSV line (newline optional); raise IntegrityError if it is not a valid row."""
    text = line.rstrip("\n")
    parts = text.split(",")
    if len(parts) != 6:
        raise IntegrityError(f"CSV row {text[:80]!r} has {len(parts)} fields, expected 6")
    try:
        start_ms = parse_window(parts[0])
    except ValueError:
        raise IntegrityError(f"CSV row {text[:80]!r} has a bad Datetime") from None
    for value in parts[1:]:
        if parse_decimal(value) is None:
            raise IntegrityError(f"CSV row {text[:80]!r} has a non-decimal field {value!r}")
    return Row(start_ms, parts[1], parts[2], parts[3], parts[4], parts[5])
