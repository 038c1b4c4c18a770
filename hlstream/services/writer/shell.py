"""Writer run loop: open CSV files, backfill from REST, then receive bars and ack them.

The aggregator's DEALER sends `[b"bar", payload]`; our ROUTER sees `[identity, b"bar", payload]`
and answers `[identity, b"ack", encode("ack", ...{coin, interval, start_ms})]` once the bar is
durably handled (appended + fsynced, or already in the file). An un-acked bar is resent by the
aggregator, so every step here is idempotent. Once a second `run_dir/writer-status.json` is
replaced atomically with the last row per file and the counters.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from hlstream.common import inexact_io
from hlstream.common.backoff import WeightBudget
from hlstream.common.bus_io import curve_keys, new_session_id, secure_server
from hlstream.common.clock import now_ms as wall_now_ms
from hlstream.common.config import Settings
from hlstream.common.durable import hold_lock
from hlstream.common.errors import IntegrityError, ProtocolError, TransientError
from hlstream.common.filenames import csv_filename
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar, Envelope, Inexact, encode_message
from hlstream.common.rest_io import InfoClient
from hlstream.common.status import FileStatus, StageStatus
from hlstream.common.status_io import write_status
from hlstream.common.timebucket import format_window, has_rest_candles
from hlstream.services.writer import core
from hlstream.services.writer.candles_io import REST_SETTLE_MS, CandleSource
from hlstream.services.writer.candles_io import REST_WEIGHT_PER_MINUTE as REST_WEIGHT_PER_MINUTE
from hlstream.services.writer.csvfile_io import CsvFile, WriteFailedError
from hlstream.services.writer.dirlock import hold_dir_lock

POLL_MS = 200
STATUS_EVERY_S = 1.0
REST_ATTEMPTS = 3
BACKFILL_ATTEMPTS = 4
LOCK_FILE = "writer.lock"


@dataclass
class Counters:
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


class Writer:
    """The writer process: owns every CSV file of one data dir."""

    def __init__(
        self,
        settings: Settings,
        stop: StopFlag,
        log: EventLog,
        *,
        context: zmq.Context[Any] | None = None,
        info: Any = None,
        now_ms: Callable[[], int] = wall_now_ms,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.log = log
        self.context = context
        self.info = info if info is not None else InfoClient(settings.info_url, timeout_s=5.0)
        self.now_ms = now_ms
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.session = new_session_id()
        self.ack_seq = 0
        self.counters = Counters()
        self.interval_ms = settings.interval_ms
        self.rest = CandleSource(
            self.info, settings, stop, log, now_ms=now_ms, sleep=sleep, rng=self.rng
        )
        self.files: dict[tuple[str, str], CsvFile] = {}
        self.refused: dict[tuple[str, str], str] = {}
        self._lock_fd = -1
        self._data_lock_fd = -1

    @property
    def budget(self) -> WeightBudget:
        """The REST weight budget (share one across Writers with the setter)."""
        return self.rest.budget

    @budget.setter
    def budget(self, value: WeightBudget) -> None:
        self.rest.budget = value

    # ---- startup -------------------------------------------------------------------------

    def acquire_lock(self) -> None:
        """Refuse to run twice on one run dir (two ROUTERs would steal each other's bars)."""
        path = self.settings.run_dir / LOCK_FILE
        self._lock_fd = hold_lock(path, f"pid {os.getpid()}", f"another writer holds {path}")
        self._data_lock_fd = hold_dir_lock(self.settings.data_dir, self.settings.run_dir)

    def open_files(self) -> None:
        """Open every coin x interval file; a foreign file is refused, the others still run."""
        for coin in self.settings.coins:
            for interval in self.settings.intervals:
                path = self.settings.data_dir / csv_filename(coin, interval)
                try:
                    handle = CsvFile(path, self.log, self.interval_ms[interval]).open()
                except IntegrityError as exc:
                    self.refused[(coin, interval)] = str(exc)
                    self.counters.refused += 1
                    self.log.error("csv_refused", coin=coin, interval=interval, error=str(exc))
                    continue
                self.files[(coin, interval)] = handle

    def backfill(self) -> None:
        """Fill each REST interval's file up to the last finished window (bounded retries)."""
        for (coin, interval), handle in self.files.items():
            if self.stop.is_set():
                return
            if not has_rest_candles(interval):
                continue
            interval_ms = self.interval_ms[interval]
            span = core.backfill_range(
                handle.last_row(),
                interval_ms,
                self.now_ms(),
                self.settings.backfill_hours,
                settle_ms=REST_SETTLE_MS,
            )
            if span is None:
                continue
            try:
                written = self._fill(handle, coin, interval, span[0], span[1], BACKFILL_ATTEMPTS)
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
            self.log.info(
                "backfill_done",
                coin=coin,
                interval=interval,
                rows=written,
                start=format_window(span[0]),
                end=format_window(span[1]),
            )

    # ---- REST ----------------------------------------------------------------------------

    def _candles(
        self, coin: str, interval: str, start_ms: int, end_ms: int, attempts: int
    ) -> list[Bar]:
        try:
            return self.rest.candles(coin, interval, start_ms, end_ms, attempts)
        finally:
            self.counters.rest_errors = self.rest.errors

    def _fill(
        self, handle: CsvFile, coin: str, interval: str, start_ms: int, end_ms: int, attempts: int
    ) -> int:
        """Write windows [start_ms, end_ms) after the last row from REST + carry-forward."""
        interval_ms = self.interval_ms[interval]
        candles = (
            self._candles(coin, interval, start_ms, end_ms, attempts)
            if has_rest_candles(interval)
            else []
        )
        plan = core.plan_fill(
            handle.last_row(), interval_ms, candles, start_ms, end_ms, coin=coin, interval=interval
        )
        if not has_rest_candles(interval):  # carried blind: the windows may have had trades
            inexact_io.record(
                handle.path, [(bar.start_ms, inexact_io.Reason.CARRIED_OVER_HOLE) for bar in plan]
            )
        written = handle.append(plan)
        self.counters.rows_written += len(written)
        return len(written)

    # ---- bars ----------------------------------------------------------------------------

    def handle_bar(self, bar: Bar) -> bool:
        """Make one bar durable; True when it may be acked."""
        key = (bar.coin, bar.interval)
        handle = self.files.get(key)
        if handle is None:
            self.log.warning_limited(
                f"refused:{key}",
                30.0,
                "bar_for_refused_file",
                coin=bar.coin,
                interval=bar.interval,
                error=self.refused.get(key, "not open"),
            )
            return False
        interval_ms = self.interval_ms[bar.interval]
        last = handle.last_row()
        placement = core.classify(bar.start_ms, last, interval_ms)
        if placement is core.Placement.DUPLICATE:
            self.counters.duplicates += 1
            self.log.debug(
                "bar_duplicate", coin=bar.coin, interval=bar.interval, start_ms=bar.start_ms
            )
            return True
        try:
            if placement is core.Placement.HOLE and last is not None:
                hole_from = last.start_ms + interval_ms
                filled = self._fill(
                    handle, bar.coin, bar.interval, hole_from, bar.start_ms, REST_ATTEMPTS
                )
                self.counters.holes_repaired += 1 if filled else 0
                self.log.warning(
                    "hole_repaired",
                    coin=bar.coin,
                    interval=bar.interval,
                    rows=filled,
                    start=format_window(hole_from),
                    end=format_window(bar.start_ms),
                )
            out = self._replace_partial(bar, handle.last_row())
            if not out.complete:
                inexact_io.record(handle.path, [(out.start_ms, inexact_io.Reason.PARTIAL)])
            written = handle.append([out])
        except (TransientError, ProtocolError) as exc:
            self.log.error(
                "bar_not_written",
                coin=bar.coin,
                interval=bar.interval,
                start_ms=bar.start_ms,
                error=str(exc),
                note="left un-acked; the aggregator resends it",
            )
            if isinstance(exc, WriteFailedError):
                self.counters.write_errors += 1
            return False
        self.counters.bars_written += len(written)
        self.counters.rows_written += len(written)
        return True

    def _replace_partial(self, bar: Bar, last: core.Row | None) -> Bar:
        """A partial bar becomes the exchange's candle once the exchange has closed it."""
        if bar.complete:
            return bar
        out, reason = self.rest.settled_candle(bar, None if last is None else last.close)
        self.counters.rest_errors = self.rest.errors
        if out is not None:
            self.log.info(
                "partial_replaced_by_rest",
                coin=bar.coin,
                interval=bar.interval,
                start_ms=bar.start_ms,
                how=reason,
            )
            return out
        self.counters.partial_written += 1
        self.log.warning(
            "partial_bar_written",
            coin=bar.coin,
            interval=bar.interval,
            start_ms=bar.start_ms,
            trades=bar.trades,
            reason=reason,
        )
        return bar

    def parse_frames(self, frames: list[bytes]) -> tuple[bytes, Bar | Inexact]:
        """Validate `[identity, b"bar"|b"inexact", payload]`; ProtocolError when malformed."""
        if len(frames) != 3:
            raise ProtocolError(f"expected [identity, kind, payload], got {len(frames)} frames")
        item = core.decode_writer_frame(frames[1], frames[2])
        if item.coin not in self.settings.coins or item.interval not in self.interval_ms:
            raise ProtocolError(f"{frames[1]!r} for unconfigured {item.coin!r} {item.interval!r}")
        if isinstance(item, Bar):
            core.validate_bar(item, self.interval_ms[item.interval])
        return frames[0], item

    def handle_notice(self, notice: Inexact) -> bool:
        """Record rows the aggregator emitted before a gap over them was known."""
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
        return True

    def ack(self, socket: zmq.Socket[Any], identity: bytes, item: Bar | Inexact) -> None:
        self.ack_seq += 1
        payload = encode_message(Envelope(self.session, self.ack_seq), core.ack_of(item))
        try:
            socket.send_multipart([identity, b"ack", payload], flags=zmq.NOBLOCK)
            self.counters.acks += 1
        except zmq.Again:
            self.log.warning_limited("ack_drop", 10.0, "ack_dropped", coin=item.coin)

    # ---- status and loop -----------------------------------------------------------------

    def publish_status(self) -> None:
        """Atomically replace run_dir/writer-status.json."""
        files = {
            handle.path.name: FileStatus(
                coin, interval, None if handle.last is None else handle.last.start_ms
            )
            for (coin, interval), handle in self.files.items()
        }
        status = StageStatus(
            "writer",
            self.now_ms(),
            os.getpid(),
            self.session,
            asdict(self.counters),
            files=files,
            refused={f"{c} {i}": err for (c, i), err in self.refused.items()},
            rest=self.rest.health.status(),
        )
        write_status(self.settings.run_dir, status)

    def serve(self, socket: zmq.Socket[Any]) -> None:
        """Receive bars until the stop flag is set."""
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self.stop.fileno(), zmq.POLLIN)  # a stop wakes the poll at once
        next_status = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_status:
                self.publish_status()
                next_status = time.monotonic() + STATUS_EVERY_S
            if not dict(poller.poll(POLL_MS)):
                continue
            while not self.stop.is_set():
                try:
                    frames = socket.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.on_frames(socket, frames)

    def on_frames(self, socket: zmq.Socket[Any], frames: list[bytes]) -> None:
        try:
            identity, item = self.parse_frames(frames)
        except ProtocolError as exc:
            self.counters.malformed += 1
            self.log.warning_limited(
                "malformed",
                10.0,
                "malformed_frame",
                error=str(exc),
                total=self.counters.malformed,
            )
            return
        handled = self.handle_notice(item) if isinstance(item, Inexact) else self.handle_bar(item)
        if handled:
            self.ack(socket, identity, item)

    def run(self) -> None:
        """Start up, serve until SIGTERM/SIGINT, then close everything."""
        # A file-size limit must surface as EFBIG (and a clean truncate), not kill us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.acquire_lock()
        context = self.context or zmq.Context()
        socket = context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 500)
        secure_server(socket, curve_keys(self.settings))
        try:
            self.open_files()
            self.backfill()
            socket.bind(self.settings.writer_endpoint)
            self.log.info(
                "listening",
                endpoint=self.settings.writer_endpoint,
                files=len(self.files),
                refused=len(self.refused),
            )
            self.serve(socket)
            self.publish_status()
        finally:
            socket.close()
            if self.context is None:
                context.term()
            for handle in self.files.values():
                handle.close()
            close = getattr(self.info, "close", None)
            if close is not None:
                close()
            self.log.info(
                "stopped", signal=self.stop.signal_name or "none", **asdict(self.counters)
            )
