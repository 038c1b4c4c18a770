"""The writer's live venue audit, in a thread of its own so it never delays an append.

Every row appended from the aggregator is offered to its file's ledger (audit.py); the thread
asks candleSnapshot for the due units, batched per file, on `audit_weight_share` of the venue's
weight, the files in turn. A mismatch is logged once and recorded: a 1m+ row as a revision
(`{file}.revisions`, applied by `hlstream repair`), seconds rows in `{file}.inexact`. A row
reported `gap_after_close` is audited with that reason; a match clears its journal entry. The
ledgers are saved to `run_dir/writer-audit.json` every SAVE_EVERY_S and at stop.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import msgspec

from hlstream.common import inexact_io, revisions_io
from hlstream.common.backoff import WeightBudget
from hlstream.common.config import Settings
from hlstream.common.csvrow import Row
from hlstream.common.durable import write_atomic
from hlstream.common.errors import IntegrityError, ProtocolError, TransientError
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.common.revisions import GAP_AFTER_CLOSE
from hlstream.common.status import AuditScore
from hlstream.common.timebucket import format_window
from hlstream.services.writer.audit import (
    MINUTE_MS,
    VENUE_WEIGHT_PER_MINUTE,
    AuditLedger,
    Outcome,
    audit_period_s,
    plan_requests,
    revision_of,
    score_of,
)
from hlstream.services.writer.candles_io import CandleSource, Info
from hlstream.services.writer.core import row_of
from hlstream.services.writer.ledger_state import decode_ledgers, encode_ledgers, restore

TICK_S = 1.0
RETRY_MS = 60_000  # a candle the venue does not serve yet is asked for again this much later
MAX_ATTEMPTS = 5
FETCH_ATTEMPTS = 2
LEDGER_FILE = "writer-audit.json"
SAVE_EVERY_S = 5.0


class Auditor:
    """Ledgers of the writer's files and the thread that audits them against the venue."""

    def __init__(
        self,
        settings: Settings,
        stop: StopFlag,
        log: EventLog,
        info: Info,
        paths: dict[tuple[str, str], Path],
        *,
        now_ms: Callable[[], int],
        clock_s: Callable[[], float] = time.monotonic,
        retry_ms: int = RETRY_MS,
        max_attempts: int = MAX_ATTEMPTS,
        period_ms: int | None = None,
    ) -> None:
        """`period_ms` None: each file's from `audit_period_s`; `clock_s`: the budget's."""
        self.stop = stop
        self.log = log
        self.now_ms = now_ms
        self.clock_s = clock_s
        self.paths = paths
        settle_s = settings.audit_settle_seconds
        self.ledgers: dict[tuple[str, str], AuditLedger] = {}
        for coin, interval in paths:
            unit_ms = max(settings.interval_ms[interval], MINUTE_MS)
            period = audit_period_s(len(paths), settings.audit_weight_share, settle_s, unit_ms)
            self.ledgers[(coin, interval)] = AuditLedger(
                settings.interval_ms[interval],
                int(settle_s * 1000),
                retry_ms,
                max_attempts,
                int(period * 1000) if period_ms is None else period_ms,
            )
        self.cursor = 0  # the file the next tick starts with
        with_minute = replace(settings, intervals=tuple(dict.fromkeys((*settings.intervals, "1m"))))
        self.source = CandleSource(
            info, with_minute, stop, log, now_ms=now_ms, sleep=time.sleep, rng=random.Random()
        )
        self.source.budget = WeightBudget(settings.audit_weight_share * VENUE_WEIGHT_PER_MINUTE)
        self.source.clock_s = clock_s
        self.lock = threading.Lock()  # the ledgers: the writer offers, the thread settles
        self.thread = threading.Thread(target=self._run, name="writer-audit", daemon=True)
        self.ledger_path = settings.run_dir / LEDGER_FILE
        self.data_dir = str(settings.data_dir.resolve())
        self.changes = 0  # ledger changes; `saved` of them are in the ledger file
        self.saved = 0
        self.load()

    def load(self) -> None:
        """Continue the ledgers of the file an earlier run saved, if any."""
        try:
            saved = decode_ledgers(self.ledger_path.read_bytes(), self.data_dir)
            with self.lock:
                pending = restore(self.ledgers, saved)
        except FileNotFoundError:
            return
        except (OSError, IntegrityError) as exc:
            self.log.error("audit_ledger_unreadable", path=str(self.ledger_path), error=str(exc))
            return
        kept = [key for key in saved if key in self.ledgers]
        self.log.info(
            "audit_ledger_restored",
            files=len(kept),
            dropped=len(saved) - len(kept),
            audited=sum(saved[key].audited for key in kept),
            pending=pending,
        )

    def save(self) -> None:
        """Replace the ledger file with the ledgers as they are, if they changed."""
        with self.lock:
            changes = self.changes
            if changes == self.saved:
                return
            data = encode_ledgers(self.ledgers, self.data_dir)
        try:
            write_atomic(self.ledger_path, data)
        except OSError as exc:
            self.log.warning_limited(
                "ledger", 60.0, "audit_ledger_not_saved", path=str(self.ledger_path), error=str(exc)
            )
            return
        self.saved = changes

    def offer(self, bars: list[Bar]) -> None:
        """Rows just appended (the writer's thread)."""
        with self.lock:
            for bar in bars:
                ledger = self.ledgers.get((bar.coin, bar.interval))
                if ledger is not None and bar.source != "rest":
                    ledger.add(row_of(bar), bar.trades)
                    self.changes += 1

    def gap_after_close(self, coin: str, interval: str, starts: list[int]) -> None:
        """Rows a later-known feed gap covered (the writer's thread, after it journaled them):
        pending ones are revised as gap_after_close should they differ, matched ones confirmed."""
        with self.lock:
            ledger = self.ledgers.get((coin, interval))
            if ledger is None:
                return
            marked, matched = ledger.mark(starts, GAP_AFTER_CLOSE)
            self.changes += 1
        if ledger.seconds:
            return
        self.log.info(
            "audit_gap_after_close",
            coin=coin,
            interval=interval,
            marked=len(marked),
            matched=len(matched),
            other=len(starts) - len(marked) - len(matched),
        )
        for start in matched:
            self._confirmed(coin, interval, start)

    def totals(self) -> AuditScore:
        """Every file's score, summed."""
        rows = [msgspec.structs.astuple(score) for score in self.scores().values()]
        return AuditScore(*(sum(column) for column in zip(*rows, strict=True)))

    def scores(self) -> dict[tuple[str, str], AuditScore]:
        """Each file's score, by (coin, interval)."""
        with self.lock:
            return {key: score_of(ledger) for key, ledger in self.ledgers.items()}

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait for the thread to end, then save the ledgers a last time."""
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        if not self.thread.is_alive():
            self.save()

    def _run(self) -> None:
        next_save = time.monotonic() + SAVE_EVERY_S
        try:
            while not self.stop.wait(TICK_S):
                self.tick()
                if time.monotonic() >= next_save:
                    self.save()
                    next_save = time.monotonic() + SAVE_EVERY_S
        except Exception:  # the audit must never take the writer down
            self.log.exception("audit_crash")

    def tick(self) -> None:
        """Audit the due units of each file in turn, from where the last tick stopped, while
        the budget allows."""
        keys = list(self.ledgers)
        for turn in range(len(keys)):
            index = (self.cursor + turn) % len(keys)
            if self.stop.is_set() or not self._audit(*keys[index]):
                self.cursor = index
                return

    def _audit(self, coin: str, interval: str) -> bool:
        """Ask the venue for the file's due units; False when the budget is short of the next
        request (its units stay due)."""
        ledger = self.ledgers[(coin, interval)]
        with self.lock:
            due = ledger.due(self.now_ms())
        if not due:
            return True
        label = interval if not ledger.seconds else "1m"
        for request in plan_requests({(coin, label): due}, {label: ledger.unit_ms}):
            if self.source.budget.wait_s(request.weight, self.clock_s()) > 0:
                return False
            try:
                candles = self.source.candles(
                    coin, label, request.start_ms, request.end_ms, FETCH_ATTEMPTS
                )
            except (TransientError, ProtocolError):
                break  # logged by the source; asked again after a period
            asked = [s for s in due if request.start_ms <= s < request.end_ms]
            with self.lock:
                outcomes = ledger.settle(asked, {c.start_ms: c for c in candles}, self.now_ms())
                self.changes += 1
            for outcome in outcomes:
                if outcome.problems:
                    self._mismatch(coin, interval, ledger.seconds, outcome)
                elif outcome.reason == GAP_AFTER_CLOSE:
                    self._confirmed(coin, interval, outcome.unit_ms)
        with self.lock:
            ledger.asked(self.now_ms())
        return True

    def _mismatch(self, coin: str, interval: str, seconds: bool, outcome: Outcome) -> None:
        path = self.paths[(coin, interval)]
        candle = outcome.candle
        self.log.error(
            "venue_mismatch",
            coin=coin,
            interval=interval,
            window=format_window(outcome.unit_ms),
            rows=len(outcome.rows),
            reason=outcome.reason,
            problems="; ".join(outcome.problems),
            ours=_values(outcome.rows[0]) if not seconds else "",
            venue=f"{_values(candle)} n={candle.trades}",
        )
        try:
            if seconds:
                reason = inexact_io.Reason.VENUE_MISMATCH
                inexact_io.record(path, [(row.start_ms, reason) for row in outcome.rows])
            else:
                revision = revision_of(outcome.rows[0], candle, outcome.reason, self.now_ms())
                revisions_io.append(path, [revision])
        except OSError as exc:
            self.log.error("audit_not_recorded", path=str(path), error=str(exc))

    def _confirmed(self, coin: str, interval: str, start_ms: int) -> None:
        """A gap_after_close row equals the venue's candle: it is exact after all."""
        path = self.paths[(coin, interval)]
        reason = inexact_io.Reason.GAP_AFTER_CLOSE
        try:
            inexact_io.discard(path, [start_ms], reason)
        except OSError as exc:
            self.log.error("audit_not_recorded", path=str(path), error=str(exc))
            return
        self.log.info(
            "gap_after_close_confirmed",
            coin=coin,
            interval=interval,
            window=format_window(start_ms),
        )


def _values(row: Row | Bar) -> str:
    return f"{row.open} {row.high} {row.low} {row.close} {row.volume}"
