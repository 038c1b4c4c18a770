"""Every CSV file of one data dir and how rows get into them: REST backfill, bars from the
aggregator, hole repair, partial bars replaced by the venue's candle, inexact-row journaling.
Every step is idempotent: a bar may be handed in again."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from hlstream.common import inexact_io, revisions_io
from hlstream.common.backoff import WeightBudget
from hlstream.common.clock import now_ms as wall_now_ms
from hlstream.common.config import Settings
from hlstream.common.csvrow import Row
from hlstream.common.errors import IntegrityError, ProtocolError, TransientError
from hlstream.common.filenames import csv_filename
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar, Inexact
from hlstream.common.rest_io import InfoClient
from hlstream.common.timebucket import format_window, has_rest_candles
from hlstream.services.writer import core
from hlstream.services.writer.candles_io import REST_WEIGHT_PER_MINUTE, CandleSource, Info
from hlstream.services.writer.csvfile_io import CsvFile, WriteFailedError

REST_TIMEOUT_S = 5.0
REST_ATTEMPTS = 3  # per hole repair while bars wait
BACKFILL_ATTEMPTS = 4
LOG_EVERY_S = 30.0  # a repeated warning is logged at most this often


@dataclass
class Counters:
    """What the writer counts since it started (also in its status)."""

    bars_written: int = 0
    rows_written: int = 0
    duplicates: int = 0
    holes_repaired: int = 0
    partial_written: int = 0
    inexact_rows: int = 0  # rows recorded as not exact (partial, blind carry, gap after close)
    rest_errors: int = 0
    malformed: int = 0
    write_errors: int = 0
    refused: int = 0
    acks: int = 0
    rows_audited: int = 0  # rows compared with the venue's candles (auditor_io.py)
    rows_matched: int = 0
    rows_mismatched: int = 0
    rows_unauditable: int = 0  # the venue never served their candle
    audit_pending: int = 0


class Store:
    """The bar files of the configured coins x intervals and the REST source that fills them."""

    def __init__(
        self,
        settings: Settings,
        stop: StopFlag,
        log: EventLog,
        *,
        info: Info | None = None,
        now_ms: Callable[[], int] = wall_now_ms,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.log = log
        self.now_ms = now_ms
        self.info = info or InfoClient(settings.info_url, timeout_s=REST_TIMEOUT_S)
        self.rest = CandleSource(
            self.info, settings, stop, log, now_ms=now_ms, sleep=sleep, rng=rng or random.Random()
        )
        # The venue audit (auditor_io.py) spends its share of the weight; the writer the rest.
        self.rest.budget = WeightBudget(REST_WEIGHT_PER_MINUTE * (1 - settings.audit_weight_share))
        self.on_written: Callable[[list[Bar]], None] | None = None  # rows appended from bars
        # rows journaled gap_after_close: (coin, interval, window starts), for the audit
        self.on_gap: Callable[[str, str, list[int]], None] | None = None
        self.interval_ms = settings.interval_ms
        self.counters = Counters()
        self.files: dict[tuple[str, str], CsvFile] = {}
        self.refused: dict[tuple[str, str], str] = {}

    def open_files(self) -> None:
        """Open every coin x interval file; a foreign file is refused, the others still run."""
        for coin in self.settings.coins:
            for interval in self.settings.intervals:
                path = self.settings.data_dir / csv_filename(coin, interval)
                try:
                    self.files[(coin, interval)] = CsvFile(
                        path, self.log, self.interval_ms[interval]
                    ).open()
                except IntegrityError as exc:
                    self.refused[(coin, interval)] = str(exc)
                    self.counters.refused += 1
                    self.log.error("csv_refused", coin=coin, interval=interval, error=str(exc))

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()

    def apply_revisions(self, before_ms: int) -> None:
        """Apply the pending revisions of rows before `before_ms` to every file, as `hlstream
        repair` does; a file that changed is reopened, so appends go on in the new one."""
        for handle in self.files.values():
            path = handle.path
            if not revisions_io.revisions_path(path).exists() or not path.exists():
                continue
            try:
                result = revisions_io.apply_file(path, before_ms)
                if result is not None and result.applied:
                    handle.close()
                    handle.open()
            except (OSError, IntegrityError) as exc:
                self.log.error("revisions_not_applied", path=str(path), error=str(exc))
                continue
            if result is None or not (result.applied or result.conflicts):
                continue
            for revision in result.conflicts:
                self.log.error(
                    "revision_conflict", path=str(path), window=format_window(revision.old.start_ms)
                )
            self.log.info(
                "revisions_applied",
                path=str(path),
                applied=result.applied,
                already=result.already,
                conflicts=len(result.conflicts),
            )

    def backfill(self) -> None:
        """Fill each REST interval's file up to the last finished window (bounded retries)."""
        for (coin, interval), handle in self.files.items():
            if self.stop.is_set():
                return
            if not has_rest_candles(interval):
                continue
            interval_ms, hours = self.interval_ms[interval], self.settings.backfill_hours
            span = core.backfill_range(handle.last_row(), interval_ms, self.now_ms(), hours)
            if span is None:
                continue
            try:
                written = self._fill(handle, coin, interval, *span, BACKFILL_ATTEMPTS)
            except (TransientError, ProtocolError) as exc:
                self.log.repeated(
                    logging.ERROR,
                    "backfill_failed",
                    str(exc),
                    coin=coin,
                    interval=interval,
                    note="will retry on the next bar's hole repair",
                )
                continue
            start, end = (format_window(ms) for ms in span)
            self.log.info(
                "backfill_done", coin=coin, interval=interval, rows=written, start=start, end=end
            )

    def _fill(
        self, handle: CsvFile, coin: str, interval: str, start_ms: int, end_ms: int, attempts: int
    ) -> int:
        """Write windows [start_ms, end_ms) after the last row from REST + carry-forward."""
        candles: list[Bar] = []
        if has_rest_candles(interval):
            try:
                candles = self.rest.candles(coin, interval, start_ms, end_ms, attempts)
            finally:
                self.counters.rest_errors = self.rest.errors
        plan = core.plan_fill(
            handle.last_row(), self.interval_ms[interval], candles, start_ms, end_ms, coin, interval
        )
        if not has_rest_candles(interval):  # carried blind: the windows may have had trades
            carried = inexact_io.Reason.CARRIED_OVER_HOLE
            inexact_io.record(handle.path, [(bar.start_ms, carried) for bar in plan])
        written = handle.append(plan)
        self.counters.rows_written += len(written)
        return len(written)

    def handle_bar(self, bar: Bar) -> bool:
        """Make one bar durable; True when it may be acked."""
        key = (bar.coin, bar.interval)
        handle = self.files.get(key)
        if handle is None:
            self.log.warning_limited(
                f"refused:{key}",
                LOG_EVERY_S,
                "bar_for_refused_file",
                coin=bar.coin,
                interval=bar.interval,
                error=self.refused.get(key, "not open"),
            )
            return False
        interval_ms = self.interval_ms[bar.interval]
        last = handle.last_row()
        fields = {"coin": bar.coin, "interval": bar.interval}
        if last is not None and bar.start_ms <= last.start_ms:  # already written
            self.counters.duplicates += 1
            self.log.debug("bar_duplicate", **fields, start_ms=bar.start_ms)
            return True
        try:
            hole = core.hole_before(bar.start_ms, last, interval_ms)
            if hole is not None:
                filled = self._fill(handle, bar.coin, bar.interval, *hole, REST_ATTEMPTS)
                self.counters.holes_repaired += 1 if filled else 0
                start, end = (format_window(ms) for ms in hole)
                self.log.warning("hole_repaired", **fields, rows=filled, start=start, end=end)
            out = self._replace_partial(bar, handle.last_row())
            if not out.complete:
                inexact_io.record(handle.path, [(out.start_ms, inexact_io.Reason.PARTIAL)])
            written = handle.append([out])
        except (TransientError, ProtocolError) as exc:
            self.log.error(
                "bar_not_written",
                **fields,
                start_ms=bar.start_ms,
                error=str(exc),
                note="left un-acked; the aggregator resends it",
            )
            if isinstance(exc, WriteFailedError):
                self.counters.write_errors += 1
            return False
        self.counters.bars_written += len(written)
        self.counters.rows_written += len(written)
        if written and self.on_written is not None:
            self.on_written(written)
        return True

    def _replace_partial(self, bar: Bar, last: Row | None) -> Bar:
        """A partial bar becomes the exchange's candle once the exchange has closed it."""
        if bar.complete:
            return bar
        out, reason = self.rest.settled_candle(bar, None if last is None else last.close)
        self.counters.rest_errors = self.rest.errors
        fields = {"coin": bar.coin, "interval": bar.interval, "start_ms": bar.start_ms}
        if out is not None:
            self.log.info("partial_replaced_by_rest", **fields, how=reason)
            return out
        self.counters.partial_written += 1
        self.log.warning("partial_bar_written", **fields, trades=bar.trades, reason=reason)
        return bar

    def handle_notice(self, notice: Inexact) -> bool:
        """Record rows the aggregator emitted before a gap over them was known, and hand them
        to the venue audit, if on (1m+ rows are then revised from the venue's candle)."""
        handle = self.files.get((notice.coin, notice.interval))
        if handle is None:
            return False
        windows = core.notice_windows(notice, self.interval_ms[notice.interval])
        reason = inexact_io.Reason.GAP_AFTER_CLOSE
        try:
            inexact_io.record(handle.path, [(start, reason) for start in windows])
        except OSError as exc:
            self.log.error("inexact_not_recorded", path=str(handle.path), error=str(exc))
            return False
        self.counters.inexact_rows += len(windows)
        self.log.error(
            "rows_not_exact",
            coin=notice.coin,
            interval=notice.interval,
            first=format_window(notice.first_ms),
            last=format_window(notice.last_ms),
            reason=notice.reason,
        )
        if self.on_gap is not None:
            self.on_gap(notice.coin, notice.interval, windows)
        return True
