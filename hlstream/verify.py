"""Integrity checks for bar CSV files (`hlstream verify`): pure functions over lines of bytes.

A file passes when it has the exact header, every line is a whole (`\\n`-terminated) row that
parses, Datetimes are canonical, aligned to the interval, strictly increasing with no
duplicate and no missing window, `low <= open, close <= high`, volume is not negative, and a
carry-forward row (volume 0) has O=H=L=C=the previous row's close. Each defect becomes one
`Finding`; the checks never stop at the first one (except after a foreign header).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from hlstream.common.csvrow import HEADER, Row, parse_row
from hlstream.common.decimals import parse_decimal
from hlstream.common.errors import ConfigError, IntegrityError
from hlstream.common.timebucket import format_window, parse_interval

FILE_SUFFIX = "_data.csv"


@dataclass(frozen=True, slots=True)
class Finding:
    """One defect: the 1-based line number (0 = the whole file), a kind and a message."""

    line: int
    kind: str
    message: str


def plural(count: int, noun: str) -> str:
    """`1 row`, `2 rows`, `1 missing window`, `0 defects`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def interval_from_filename(name: str) -> tuple[str, int] | None:
    """(`1m`, 60000) for `btc_1m_data.csv`; None when the name does not follow the pattern."""
    if not name.endswith(FILE_SUFFIX):
        return None
    stem = name[: -len(FILE_SUFFIX)]
    if "_" not in stem:
        return None
    coin, label = stem.rsplit("_", 1)
    if not coin:
        return None
    try:
        return label, parse_interval(label)
    except ConfigError:
        return None


def _is_carry(row: Row) -> bool:
    volume = parse_decimal(row.volume)
    return volume is not None and volume == 0


def _check_values(row: Row, line_no: int) -> Iterator[Finding]:
    """low <= open, close <= high; volume >= 0; plain decimals."""
    values = {
        name: parse_decimal(text)
        for name, text in (
            ("open", row.open),
            ("high", row.high),
            ("low", row.low),
            ("close", row.close),
            ("volume", row.volume),
        )
    }
    for name, text in (("open", row.open), ("close", row.close)):
        value, low, high = values[name], values["low"], values["high"]
        if value is not None and low is not None and high is not None and not low <= value <= high:
            yield Finding(
                line_no, "range", f"{name} {text} is outside low..high {row.low}..{row.high}"
            )
    volume = values["volume"]
    if volume is not None and volume < 0:
        yield Finding(line_no, "volume", f"volume {row.volume} is negative")
    for text in (row.open, row.high, row.low, row.close, row.volume):
        if "e" in text.lower() or text.strip() != text:
            yield Finding(line_no, "format", f"{text!r} is not a plain decimal")
            break


class Checker:
    """Feed lines one at a time (`feed`), then call `finish`; findings accumulate in order."""

    def __init__(
        self, interval_ms: int | None, inexact: Mapping[int, str] | None = None, journal: str = ""
    ) -> None:
        self.interval_ms = interval_ms
        self.inexact = inexact or {}
        self.journal = journal
        self._inexact_lines: dict[int, int] = {}  # window start -> line, for inexact rows
        self.findings: list[Finding] = []
        self.rows = 0
        self.lines = 0
        self._foreign = False
        self._prev: Row | None = None
        self._pending: tuple[int, bytes] | None = None

    def feed(self, raw: bytes) -> None:
        """One line as read from the file (with its `\\n`, except possibly the last)."""
        if self._pending is not None:
            self._check_line(*self._pending)
        self.lines += 1
        self._pending = (self.lines, raw)

    def finish(self) -> list[Finding]:
        """Check the last line (a torn one is reported, not parsed) and return all findings."""
        if self.lines == 0:
            self.findings.append(Finding(0, "header", f"file is empty (expected {HEADER!r})"))
        if self._pending is not None:
            line_no, raw = self._pending
            self._pending = None
            if not raw.endswith(b"\n"):
                self.findings.append(
                    Finding(
                        line_no,
                        "torn",
                        f"last line has no newline ({len(raw)} bytes): an interrupted write",
                    )
                )
            else:
                self._check_line(line_no, raw)
        for start, reason in sorted(self.inexact.items()):
            line = self._inexact_lines.get(start, 0)
            where = "" if line else "; the file has no such row"
            message = f"row {format_window(start)} is not exact: {reason} ({self.journal}){where}"
            self.findings.append(Finding(line, "inexact", message))
        return self.findings

    def _check_line(self, line_no: int, raw: bytes) -> None:
        if self._foreign:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.findings.append(Finding(line_no, "parse", "line is not valid UTF-8"))
            return
        text = text[:-1] if text.endswith("\n") else text
        if line_no == 1:
            if text != HEADER:
                self._foreign = True
                self.findings.append(
                    Finding(1, "header", f"header is {text[:80]!r}, expected {HEADER!r}")
                )
            return
        if text.endswith("\r"):
            self.findings.append(Finding(line_no, "format", "line ends with CRLF"))
            text = text[:-1]
        try:
            row = parse_row(text)
        except IntegrityError as exc:
            self.findings.append(Finding(line_no, "parse", str(exc)))
            return
        self.rows += 1
        if row.start_ms in self.inexact:
            self._inexact_lines.setdefault(row.start_ms, line_no)
        stamp = text.split(",", 1)[0]
        if format_window(row.start_ms) != stamp:
            self.findings.append(
                Finding(line_no, "format", f"Datetime {stamp!r} is not %Y-%m-%d %H:%M:%S")
            )
        self.findings.extend(_check_values(row, line_no))
        self._check_sequence(row, line_no)
        self._prev = row if self._prev is None or row.start_ms > self._prev.start_ms else self._prev

    def _check_sequence(self, row: Row, line_no: int) -> None:
        step = self.interval_ms
        stamp = format_window(row.start_ms)
        if step is not None and row.start_ms % step != 0:
            self.findings.append(Finding(line_no, "align", f"{stamp} is not the start of a window"))
            step = None  # a misaligned row cannot be placed on the window grid
        prev = self._prev
        if prev is None:
            if _is_carry(row) and not row.open == row.high == row.low == row.close:
                self.findings.append(
                    Finding(line_no, "carry", f"zero-volume row {stamp} has O/H/L/C not equal")
                )
            return
        before = format_window(prev.start_ms)
        if row.start_ms == prev.start_ms:
            self.findings.append(Finding(line_no, "duplicate", f"{stamp} appears twice"))
            return
        if row.start_ms < prev.start_ms:
            self.findings.append(
                Finding(line_no, "order", f"{stamp} comes after {before}: not increasing")
            )
            return
        if step is not None and row.start_ms - prev.start_ms > step:
            missing = (row.start_ms - prev.start_ms) // step - 1
            self.findings.append(
                Finding(
                    line_no,
                    "hole",
                    f"{plural(max(missing, 1), 'missing window')} between {before} and {stamp}",
                )
            )
        if _is_carry(row) and not row.open == row.high == row.low == row.close == prev.close:
            self.findings.append(
                Finding(
                    line_no,
                    "carry",
                    f"zero-volume row {stamp} is {row.open}/{row.high}/{row.low}/{row.close}, "
                    f"expected O=H=L=C=previous close {prev.close}",
                )
            )


def check_lines(
    lines: Iterable[bytes],
    interval_ms: int | None,
    inexact: Mapping[int, str] | None = None,
    journal: str = "",
) -> tuple[list[Finding], int]:
    """All findings for a file given as lines of bytes, and how many rows parsed.

    `inexact`: the rows the writer recorded as not exact (window start -> reason) in the
    file `journal`; each is a finding at its row's line.
    """
    checker = Checker(interval_ms, inexact, journal)
    for raw in lines:
        checker.feed(raw)
    return checker.finish(), checker.rows
