"""`{csv file}.revisions` (format: docs/audit.md), pure: an append-only CSV with one line per
row found wrong after it was written, and applying it to rows. Applying is idempotent: a row
already equal to its revision's new values is left alone; a row that matches neither the old
nor the new values is a conflict, never changed. Values compare as exact decimals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from hlstream.common.csvrow import Row
from hlstream.common.decimals import parse_decimal
from hlstream.common.errors import IntegrityError
from hlstream.common.timebucket import format_window, parse_window

SUFFIX = ".revisions"
HEADER = (
    "Datetime,Old Open,Old High,Old Low,Old Close,Old Volume,"
    "Open,High,Low,Close,Volume,Reason,Detected At"
)
FIELDS = ("open", "high", "low", "close", "volume")
VENUE_MISMATCH = "venue_mismatch"
GAP_AFTER_CLOSE = "gap_after_close"


def _dec(text: str) -> Decimal:
    value = parse_decimal(text)
    if value is None:
        raise IntegrityError(f"{text!r} is not a decimal string")
    return value


def _values(row: Row) -> tuple[str, ...]:
    return tuple(getattr(row, name) for name in FIELDS)


@dataclass(frozen=True, slots=True)
class Revision:
    """A written row found wrong: its old values, the new ones, why, and when (epoch ms)."""

    old: Row
    new: Row
    reason: str
    detected_ms: int

    def __post_init__(self) -> None:
        if self.old.start_ms != self.new.start_ms:
            raise ValueError("a revision keeps its row's Datetime")


def format_revision(revision: Revision) -> str:
    """The `{file}.revisions` line (newline-terminated) of one revision."""
    fields = (
        format_window(revision.old.start_ms),
        *_values(revision.old),
        *_values(revision.new),
        revision.reason,
        format_window(revision.detected_ms - revision.detected_ms % 1000),
    )
    return ",".join(fields) + "\n"


def parse_revisions(text: str) -> list[Revision]:
    """Every revision of a `{file}.revisions` text, in file order (a torn last line, from a
    crash mid-append, is ignored)."""
    lines = text.split("\n")
    if not lines or lines[0] != HEADER:
        raise IntegrityError("revisions file does not start with its header")
    revisions = []
    for number, line in enumerate(lines[1:-1], start=2):
        parts = line.split(",")
        if len(parts) != 13:
            raise IntegrityError(f"revisions line {number} has {len(parts)} fields, expected 13")
        try:
            start_ms = parse_window(parts[0])
            detected_ms = parse_window(parts[12])
        except ValueError:
            raise IntegrityError(f"revisions line {number} has a bad time") from None
        for value in parts[1:11]:
            _dec(value)
        old, new = Row(start_ms, *parts[1:6]), Row(start_ms, *parts[6:11])
        revisions.append(Revision(old, new, parts[11], detected_ms))
    return revisions


@dataclass(frozen=True, slots=True)
class Applied:
    """Rows after applying revisions, and what happened to the revisions."""

    rows: list[Row]
    applied: int  # rows changed
    already: int  # rows already equal to their revision
    conflicts: tuple[Revision, ...]  # rows that match neither side: left unchanged
    missing: tuple[Revision, ...]  # revisions of a Datetime the rows do not hold


def apply_revisions(rows: Sequence[Row], revisions: Iterable[Revision]) -> Applied:
    """`rows` with every revision applied in order (see the module docstring)."""
    by_start = {row.start_ms: index for index, row in enumerate(rows)}
    out = list(rows)
    applied = already = 0
    conflicts: list[Revision] = []
    missing: list[Revision] = []
    for revision in revisions:
        index = by_start.get(revision.old.start_ms)
        if index is None:
            missing.append(revision)
            continue
        current = out[index]
        if _equal(current, revision.new):
            already += 1
        elif _equal(current, revision.old):
            out[index] = revision.new
            applied += 1
        else:
            conflicts.append(revision)
    return Applied(out, applied, already, tuple(conflicts), tuple(missing))


def _equal(row: Row, other: Row) -> bool:
    return all(_dec(a) == _dec(b) for a, b in zip(_values(row), _values(other), strict=True))


def pending_revisions(rows: Sequence[Row], revisions: Iterable[Revision]) -> list[Revision]:
    """Revisions not yet applied to `rows` (their row still holds the old values)."""
    by_start = {row.start_ms: row for row in rows}
    return [
        rev
        for rev in revisions
        if (row := by_start.get(rev.old.start_ms)) is not None
        and _equal(row, rev.old)
        and not _equal(row, rev.new)
    ]
