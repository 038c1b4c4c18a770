"""Pure venue audit: our rows against the venue's candles, the weight it may spend, and the
revision (common/revisions.py) of a row found wrong.

Invariants:
- Values compare as exact decimals (`1.50` equals `1.5`).
- A 1m+ row matches when OHLCV (and `n`, where ours is known) equal the venue candle's.
- Seconds rows are audited a minute at a time against the venue's 1m candle; carry rows
  (volume 0) do not set the minute's open, high and low.
- The audit spends at most `share` of the venue's 1,200 a minute (`audit_period_s`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from hlstream.common.csvrow import Row
from hlstream.common.decimals import format_decimal, parse_decimal
from hlstream.common.errors import IntegrityError
from hlstream.common.messages import Bar
from hlstream.common.revisions import VENUE_MISMATCH, Revision
from hlstream.common.status import AuditScore
from hlstream.services.writer.core import candle_weight, row_of

MINUTE_MS = 60_000
VENUE_WEIGHT_PER_MINUTE = 1200.0
MAX_AUDIT_CANDLES = 500  # per request: a day of 5m, eight hours of 1m
MATCHED_KEPT = 64  # per file: the latest 1m+ rows that matched, for a gap notice that follows
FIELDS = ("open", "high", "low", "close", "volume")


def _dec(text: str) -> Decimal:
    value = parse_decimal(text)
    if value is None:
        raise IntegrityError(f"{text!r} is not a decimal string")
    return value


def _same(ours: str, venue: str) -> bool:
    return _dec(ours) == _dec(venue)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Fields of our row that differ from the venue's candle: (field, ours, venue)."""

    start_ms: int
    fields: tuple[tuple[str, str, str], ...]


def compare_row(ours: Row, venue: Bar, our_trades: int | None = None) -> Mismatch | None:
    """None when our row equals the venue's candle; else what differs."""
    if ours.start_ms != venue.start_ms:
        raise ValueError(f"row {ours.start_ms} compared with candle {venue.start_ms}")
    diffs = [
        (name, getattr(ours, name), getattr(venue, name))
        for name in FIELDS
        if not _same(getattr(ours, name), getattr(venue, name))
    ]
    if our_trades is not None and our_trades != venue.trades:
        diffs.append(("n", str(our_trades), str(venue.trades)))
    return Mismatch(ours.start_ms, tuple(diffs)) if diffs else None


@dataclass(frozen=True, slots=True)
class MinuteAudit:
    """A minute of seconds rows against the venue's 1m candle; `problems` empty: matched."""

    starts: tuple[int, ...]  # the seconds rows audited (flagged together on a mismatch)
    problems: tuple[str, ...]


def audit_minute(
    rows: Sequence[Row],
    minute: Bar,
    interval_ms: int,
    trades: Sequence[int | None] | None = None,
) -> MinuteAudit:
    """Audit the seconds rows of `minute` (every row of it, in order): counts (where known)
    and volumes sum to the candle's, the first traded open and the last close equal its open
    and close, and the traded highs and lows reach its high and low."""
    start = minute.start_ms
    expected = list(range(start, start + MINUTE_MS, interval_ms))
    inside = [row for row in rows if start <= row.start_ms < start + MINUTE_MS]
    starts = tuple(row.start_ms for row in inside)
    problems: list[str] = []
    if list(starts) != expected:
        problems.append(f"rows {len(starts)} of {len(expected)} windows")
        return MinuteAudit(starts, tuple(problems))
    volume = sum((_dec(row.volume) for row in inside), Decimal(0))
    if volume != _dec(minute.volume):
        problems.append(f"volume {format_decimal(volume)} != {minute.volume}")
    if trades is not None and None not in trades and sum(t or 0 for t in trades) != minute.trades:
        problems.append(f"n {sum(t or 0 for t in trades)} != {minute.trades}")
    traded = [row for row in inside if _dec(row.volume) != 0]
    if traded:
        checks = (
            ("open", traded[0].open, minute.open),
            ("close", inside[-1].close, minute.close),
            ("high", str(max(_dec(row.high) for row in traded)), minute.high),
            ("low", str(min(_dec(row.low) for row in traded)), minute.low),
        )
        problems.extend(
            f"{name} {ours} != {venue}" for name, ours, venue in checks if not _same(ours, venue)
        )
    elif minute.trades or _dec(minute.volume) != 0:
        problems.append("no traded row in a minute the venue traded")
    return MinuteAudit(starts, tuple(problems))


@dataclass(frozen=True, slots=True)
class AuditRequest:
    """One candleSnapshot: windows of `coin`/`interval` starting in [start_ms, end_ms)."""

    coin: str
    interval: str
    start_ms: int
    end_ms: int
    candles: int

    @property
    def weight(self) -> float:
        return candle_weight(self.candles)


def plan_requests(
    pending: Mapping[tuple[str, str], Iterable[int]],
    interval_ms: Mapping[str, int],
    max_candles: int = MAX_AUDIT_CANDLES,
) -> list[AuditRequest]:
    """Batch each (coin, interval)'s pending window starts into as few requests of at most
    `max_candles` as fit (windows between pending ones ride along: candles are cheap)."""
    plan: list[AuditRequest] = []
    for (coin, interval), starts in sorted(pending.items()):
        step = interval_ms[interval]
        ordered = sorted(set(starts))
        while ordered:
            first = ordered[0]
            cut = bisect_left(ordered, first + max_candles * step)
            last = ordered[cut - 1]
            plan.append(
                AuditRequest(coin, interval, first, last + step, (last - first) // step + 1)
            )
            ordered = ordered[cut:]
    return plan


def audit_period_s(series: int, share: float, settle_s: float, interval_ms: int) -> float:
    """The period (a whole number of intervals, at least `settle_s`) of one request per
    (coin, interval) pair that spends at most `share` of the venue's weight.

    Per hour: series * (3600 / P) * (20 + P / interval / 60) <= share * 1200 * 60, hence
    P >= 72000 * series / (share * 72000 - 60 * series / interval_s)."""
    budget = share * VENUE_WEIGHT_PER_MINUTE * 60.0
    candles_weight = 60.0 * series * 1000.0 / interval_ms  # the candles' share, per hour
    interval_s = interval_ms / 1000.0
    if series <= 0:
        return math.ceil(settle_s / interval_s) * interval_s
    if candles_weight >= budget:
        raise ValueError(f"{series} series of candles alone exceed the audit's share {share}")
    needed = candle_weight(0) * 3600.0 * series / (budget - candles_weight)
    return math.ceil(max(settle_s, needed) / interval_s) * interval_s


def revision_of(ours: Row, venue: Bar, reason: str, detected_ms: int) -> Revision:
    """The revision that makes our row the venue's candle."""
    return Revision(ours, row_of(venue), reason, detected_ms)


@dataclass(slots=True)
class Unit:
    """What one venue candle audits: a 1m+ row, or the seconds rows of one minute."""

    rows: dict[int, tuple[Row, int | None]]  # start -> (row, our trade count if known)
    due_ms: int
    attempts: int = 0
    reason: str = VENUE_MISMATCH  # the reason of its revision, should it differ


@dataclass(frozen=True, slots=True)
class Outcome:
    """One audited unit: its rows, the venue's candle, and what differs (empty: matched)."""

    unit_ms: int
    rows: tuple[Row, ...]
    candle: Bar
    problems: tuple[str, ...]
    reason: str  # the unit's: venue_mismatch, or gap_after_close for a row a gap covered


@dataclass
class AuditTally:
    audited: int = 0  # rows
    matched: int = 0
    mismatched: int = 0
    unauditable: int = 0


class AuditLedger:
    """The rows of one file awaiting their audit, on an injected clock.

    A unit is due `settle_ms` after its window (its minute, for seconds rows) ended, a minute
    of seconds rows once it holds all of them (else `retry_ms` later, as unauditable). A unit
    the venue does not serve is retried `retry_ms` later, `max_attempts` times in all. The
    file is asked at most once per `period_ms`, so one request batches what came due.
    """

    def __init__(
        self,
        interval_ms: int,
        settle_ms: int,
        retry_ms: int,
        max_attempts: int,
        period_ms: int = 0,
    ) -> None:
        self.interval_ms = interval_ms
        self.seconds = interval_ms < MINUTE_MS
        self.unit_ms = MINUTE_MS if self.seconds else interval_ms
        self.settle_ms = settle_ms
        self.retry_ms = retry_ms
        self.max_attempts = max_attempts
        self.period_ms = period_ms
        self.next_ask_ms = 0
        self.units: dict[int, Unit] = {}
        self.tally = AuditTally()
        self.matched: dict[int, None] = {}  # the latest MATCHED_KEPT matched 1m+ starts

    def pending_rows(self) -> int:
        return sum(len(unit.rows) for unit in self.units.values())

    def add(self, row: Row, trades: int | None) -> None:
        start = row.start_ms - row.start_ms % self.unit_ms
        unit = self.units.get(start)
        if unit is None:
            unit = self.units[start] = Unit({}, start + self.unit_ms + self.settle_ms)
        unit.rows[row.start_ms] = (row, trades)

    def mark(self, starts: Iterable[int], reason: str) -> tuple[list[int], list[int]]:
        """Give the pending 1m+ rows of `starts` the revision reason `reason`; return those
        marked and those that matched the venue already (seconds rows are left alone)."""
        marked: list[int] = []
        matched: list[int] = []
        if self.seconds:
            return marked, matched
        for start in starts:
            unit = self.units.get(start)
            if unit is not None:
                unit.reason = reason
                marked.append(start)
            elif start in self.matched:
                matched.append(start)
        return marked, matched

    def asked(self, now_ms: int) -> None:
        """The venue was asked for the file's due units: the next ask waits a period."""
        self.next_ask_ms = now_ms + self.period_ms

    def due(self, now_ms: int) -> list[int]:
        """Unit starts to ask the venue for now, oldest first ([] within a period of an ask)."""
        if now_ms < self.next_ask_ms:
            return []
        return sorted(
            start
            for start, unit in self.units.items()
            if unit.due_ms <= now_ms
            and (
                len(unit.rows) * self.interval_ms >= self.unit_ms
                or unit.due_ms + self.retry_ms <= now_ms
            )
        )

    def settle(
        self, asked: Iterable[int], candles: Mapping[int, Bar], now_ms: int
    ) -> list[Outcome]:
        """Judge the asked units against the candles the venue returned."""
        outcomes = []
        for start in asked:
            unit = self.units.get(start)
            if unit is None:
                continue
            candle = candles.get(start)
            if candle is None:
                unit.attempts += 1
                if unit.attempts >= self.max_attempts:
                    self.tally.unauditable += len(unit.rows)
                    del self.units[start]
                else:
                    unit.due_ms = now_ms + self.retry_ms
                continue
            del self.units[start]
            if len(unit.rows) * self.interval_ms < self.unit_ms:
                self.tally.unauditable += len(unit.rows)  # rows of it came before we started
                continue
            outcomes.append(self._judge(start, unit, candle))
        return outcomes

    def _judge(self, start: int, unit: Unit, candle: Bar) -> Outcome:
        ordered = [unit.rows[key] for key in sorted(unit.rows)]
        rows = tuple(row for row, _ in ordered)
        if self.seconds:
            trades = [n for _, n in ordered]
            problems = audit_minute(rows, candle, self.interval_ms, trades).problems
        else:
            mismatch = compare_row(rows[0], candle, ordered[0][1])
            fields = () if mismatch is None else mismatch.fields
            problems = tuple(f"{name} {ours} != {venue}" for name, ours, venue in fields)
        self.tally.audited += len(rows)
        if problems:
            self.tally.mismatched += len(rows)
        else:
            self.tally.matched += len(rows)
            if not self.seconds:
                self.matched[start] = None
                if len(self.matched) > MATCHED_KEPT:
                    del self.matched[next(iter(self.matched))]
        return Outcome(start, rows, candle, problems, unit.reason)


def score_of(ledger: AuditLedger) -> AuditScore:
    """The ledger's file's score, as the writer's status carries it."""
    tally = ledger.tally
    return AuditScore(
        tally.audited, tally.matched, tally.mismatched, ledger.pending_rows(), tally.unauditable
    )
