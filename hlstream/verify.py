"""Integrity checks for bar CSV files (`hlstream verify`), pure over lines of bytes: each
defect is one `Finding`, and the checks never stop at the first. A pending revision is a
`revised` finding, not a defect (`NOT_DEFECTS`): `hlstream repair` applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from hlstream.common.csvrow import HEADER, HEADER_LINE, Row, parse_row
from hlstream.common.errors import ConfigError, IntegrityError
from hlstream.common.messages import Bar
from hlstream.common.revisions import Revision, pending_revisions
from hlstream.common.timebucket import format_window, parse_interval

FILE_SUFFIX = "_data.csv"
REVISED = "revised"
NOT_DEFECTS = frozenset({"name", REVISED})  # finding kinds that do not fail a file


@dataclass(frozen=True, slots=True)
class Finding:
    """One defect: the 1-based line number (0 = the whole file), a kind and a message."""

    line: int
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class FileRow:
    """A row of a file as read, with its 1-based line number."""

    line: int
    row: Row
    canonical: bool  # the line is byte for byte what the writer writes for the row


def plural(count: int, noun: str) -> str:
    """`1 row`, `2 rows`, `1 missing window`, `0 defects`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def hole(before_ms: int, after_ms: int, step_ms: int) -> str:
    """`2 missing windows between A and B`: the windows missing between two rows."""
    count = plural(max((after_ms - before_ms) // step_ms - 1, 1), "missing window")
    return f"{count} between {format_window(before_ms)} and {format_window(after_ms)}"


def interval_from_filename(name: str) -> tuple[str, int] | None:
    """(`1m`, 60000) for `btc_1m_data.csv`; None when the name does not follow the pattern."""
    coin, _, label = name.removesuffix(FILE_SUFFIX).rpartition("_")
    if not name.endswith(FILE_SUFFIX) or not coin:
        return None
    try:
        return label, parse_interval(label)
    except ConfigError:
        return None


def ohlcv_text(row: Row | Bar) -> str:
    return f"{row.open} {row.high} {row.low} {row.close} {row.volume}"


def scan_lines(lines: Iterable[bytes]) -> Iterator[FileRow | Finding]:
    """The rows and line defects of a CSV file's lines (each with its `\\n` but a torn last),
    in line order; the one reader of bar files for `verify`, `rebuild` and `verify --venue`.
    After a foreign header only a torn last line is reported."""
    line = 0
    foreign = False
    for line, raw in enumerate(lines, start=1):
        if not raw.endswith(b"\n"):
            message = f"last line has no newline ({plural(len(raw), 'byte')}): an interrupted write"
            yield Finding(line, "torn", message)
            return
        if line == 1:
            foreign = raw != HEADER_LINE.encode()
            if foreign:
                text = raw.decode("utf-8", "replace")[:-1]
                yield Finding(1, "header", f"header is {text[:80]!r}, expected {HEADER!r}")
        elif not foreign:
            yield from _scan_row(line, raw)
    if line == 0:
        yield Finding(0, "header", f"file is empty (expected {HEADER!r})")


def _scan_row(line: int, raw: bytes) -> Iterator[FileRow | Finding]:
    try:
        text = raw.decode("utf-8")[:-1]
    except UnicodeDecodeError:
        yield Finding(line, "parse", "line is not valid UTF-8")
        return
    crlf = text.endswith("\r")
    if crlf:
        yield Finding(line, "format", "line ends with CRLF")
        text = text[:-1]
    try:
        row = parse_row(text)
    except IntegrityError as exc:
        yield Finding(line, "parse", str(exc))
        return
    stamp = text.split(",", 1)[0]
    stamped = format_window(row.start_ms) == stamp
    if not stamped:
        yield Finding(line, "format", f"Datetime {stamp!r} is not %Y-%m-%d %H:%M:%S")
    yield FileRow(line, row, stamped and not crlf)  # a Row keeps its values as written


def revised_findings(
    rows: Sequence[tuple[int, Row]], revisions: Iterable[Revision]
) -> list[Finding]:
    """A `revised` finding, at its row's line, per revision not yet applied to `rows`
    ((line, row) pairs; the first row of a Datetime counts)."""
    first: dict[int, tuple[int, Row]] = {}
    for line, row in rows:
        first.setdefault(row.start_ms, (line, row))
    pending = pending_revisions([row for _, row in first.values()], revisions)
    return [
        Finding(
            first[rev.old.start_ms][0],
            REVISED,
            f"{format_window(rev.old.start_ms)} {rev.reason}: ours {ohlcv_text(rev.old)} "
            f"new {ohlcv_text(rev.new)} (run hlstream repair)",
        )
        for rev in pending
    ]


def _check_values(row: Row, line: int) -> Iterator[Finding]:
    """low <= open, close <= high; volume >= 0; plain decimals (parse_row checked they parse)."""
    low, high = Decimal(row.low), Decimal(row.high)
    for name, text in (("open", row.open), ("close", row.close)):
        if not low <= Decimal(text) <= high:
            message = f"{name} {text} is outside low..high {row.low}..{row.high}"
            yield Finding(line, "range", message)
    if Decimal(row.volume) < 0:
        yield Finding(line, "volume", f"volume {row.volume} is negative")
    for text in (row.open, row.high, row.low, row.close, row.volume):
        if "e" in text.lower() or text.strip() != text:
            yield Finding(line, "format", f"{text!r} is not a plain decimal")
            break


def _check_sequence(row: Row, prev: Row | None, step: int | None, line: int) -> Iterator[Finding]:
    """Alignment, order, duplicates, holes and carry-forward against the newest row before."""
    stamp = format_window(row.start_ms)
    if step is not None and row.start_ms % step != 0:
        yield Finding(line, "align", f"{stamp} is not the start of a window")
        step = None  # a misaligned row cannot be placed on the window grid
    flat = row.open == row.high == row.low == row.close
    is_carry = Decimal(row.volume) == 0
    if prev is None:
        if is_carry and not flat:
            yield Finding(line, "carry", f"zero-volume row {stamp} has O/H/L/C not equal")
        return
    before = format_window(prev.start_ms)
    if row.start_ms == prev.start_ms:
        yield Finding(line, "duplicate", f"{stamp} appears twice")
        return
    if row.start_ms < prev.start_ms:
        yield Finding(line, "order", f"{stamp} comes after {before}: not increasing")
        return
    if step is not None and row.start_ms - prev.start_ms > step:
        yield Finding(line, "hole", hole(prev.start_ms, row.start_ms, step))
    if is_carry and not (flat and row.close == prev.close):
        yield Finding(
            line,
            "carry",
            f"zero-volume row {stamp} is {row.open}/{row.high}/{row.low}/{row.close}, "
            f"expected O=H=L=C=previous close {prev.close}",
        )


def check_lines(
    lines: Iterable[bytes],
    interval_ms: int | None,
    inexact: Mapping[int, str] | None = None,
    journal: str = "",
    revisions: Sequence[Revision] = (),
) -> tuple[list[Finding], int]:
    """All findings for a file's lines of bytes, and how many rows parsed. `inexact`: rows the
    writer recorded as not exact (start -> reason) in `journal`; each is a finding, as is each
    pending one of `revisions`."""
    inexact = inexact or {}
    revised = {rev.old.start_ms for rev in revisions}
    revised_rows: list[tuple[int, Row]] = []  # (line, row) of the rows revisions name
    findings: list[Finding] = []
    inexact_lines: dict[int, int] = {}  # window start -> line, for inexact rows
    rows = 0
    prev: Row | None = None  # the newest row so far
    for item in scan_lines(lines):
        if isinstance(item, Finding):
            findings.append(item)
            continue
        line, row = item.line, item.row
        rows += 1
        if row.start_ms in inexact:
            inexact_lines.setdefault(row.start_ms, line)
        if row.start_ms in revised:
            revised_rows.append((line, row))
        findings.extend(_check_values(row, line))
        findings.extend(_check_sequence(row, prev, interval_ms, line))
        prev = row if prev is None or row.start_ms > prev.start_ms else prev
    for start, reason in sorted(inexact.items()):
        at = inexact_lines.get(start, 0)
        where = "" if at else "; the file has no such row"
        message = f"row {format_window(start)} is not exact: {reason} ({journal}){where}"
        findings.append(Finding(at, "inexact", message))
    findings.extend(revised_findings(revised_rows, revisions))
    return findings, rows
