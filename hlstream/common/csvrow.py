"""The CSV row format shared by the writer (which appends rows) and `hlstream verify`.

A file is the header `Datetime,Open,High,Low,Close,Volume` followed by one line per window:
the UTC window start as `%Y-%m-%d %H:%M:%S`, then open/high/low/close/volume exactly as the
exchange's decimal strings (never float, never an exponent), `\\n`-terminated.
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


def format_row(bar: Bar) -> str:
    """The CSV line (with trailing newline) for a bar."""
    fields = (format_window(bar.start_ms), bar.open, bar.high, bar.low, bar.close, bar.volume)
    return ",".join(fields) + "\n"


def row_line(row: Row) -> str:
    """The CSV line (with trailing newline) of a row."""
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
