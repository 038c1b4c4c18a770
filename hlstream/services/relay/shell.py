"""The relay's loop: follow the trade tape and the bar CSV files, publish, save progress.

Three independent tasks share one durable progress file (`run_dir/relay-progress.json`,
replaced atomically with fsync, only after the server acked or committed what it records):

- trades: tape -> HL_TRADES. On every (re)connection the ids already in the stream are read
  back from the resume point less a margin, and tape records found there are skipped, so a
  restart after any downtime, or a second host publishing the same coins, adds nothing
  twice; the duplicate window only has to cover the seconds between read-back and publish.
  While catching up on records older than half the window, the read-back is repeated.
- bars -> HL_BARS and bars -> PostgreSQL: each follows every CSV file, its `.inexact`
  journal and its `.revisions` (bars_io, bars): a row journaled after it was sent goes again
  with exact=false, a revision as the venue's candle, and a file replaced by rebuild/repair
  sends the windows that changed, each one revision higher.

A sink that is down is retried with backoff and never touches the pipeline: the relay only
reads files. `run_dir/relay-status.json` is its heartbeat (core.RelayStatus).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable

import msgspec

from hlstream.common.backoff import Backoff
from hlstream.common.clock import Clock
from hlstream.common.config import Settings
from hlstream.common.durable import write_atomic
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.sinks import SinkSecrets
from hlstream.common.tape.format import Record, TapePosition
from hlstream.common.tape.readers_io import read_since
from hlstream.services.relay.bars_io import follow_bars, prune_pins
from hlstream.services.relay.core import (
    BAR_PREFIX,
    BARS_STREAM,
    GAP_PREFIX,
    READ_BACK_MARGIN_MS,
    TRADE_PREFIX,
    TRADES_STREAM,
    Counters,
    JsBar,
    Outgoing,
    RelayStatus,
    SinkState,
    bar_msg_id,
    bar_payload,
    bar_subject,
    plan_records,
    read_back_start_ms,
    record_time_ms,
)
from hlstream.services.relay.files_io import PROGRESS_FILE, lag_bytes, load_progress, status_path

SERVICE = "relay"
POLL_S = 0.05  # tape poll when caught up
BAR_POLL_S = 0.5
STATUS_EVERY_S = 1.0
SAVE_EVERY_S = 0.5
WATCH_S = 0.1  # how soon a stop or a crashed task is noticed
BATCH_RECORDS = 8_192  # tape records per publish round
PRUNE_IDS_ABOVE = 200_000

_JSON = msgspec.json.Encoder()

Acked = Callable[[list[Record], int], None]  # (records, ack wall ms): benchmarks hook here


class Relay:
    """The relay stage; `run()` returns when `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        secrets: SinkSecrets,
        stop: StopFlag,
        log: EventLog,
        clock: Clock,
        *,
        on_acked: Acked | None = None,
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.stop = stop
        self.log = log
        self.clock = clock
        self.on_acked = on_acked
        self.progress = load_progress(settings.run_dir)
        self.counters = Counters()
        self.nats = SinkState("nats", bool(settings.nats_url))
        self.postgres = SinkState("postgres", bool(settings.postgres_dsn))
        self._last_save = 0.0
        self._unsaved = False  # a throttled save is owed: the status loop makes it
        self._rng = random.Random()

    # --- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._status_loop())]
        if self.nats.configured:
            tasks.append(asyncio.create_task(self._nats_loop()))
        if self.postgres.configured:
            tasks.append(asyncio.create_task(self._postgres_loop()))
        try:
            while not self.stop.is_set():
                done = [t for t in tasks if t.done()]
                for task in done:
                    task.result()  # a crash in a task ends the stage (supervisord restarts it)
                await asyncio.sleep(WATCH_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._save(force=True)
            self._write_status()
        self.log.info("stopped", published=self.counters.published)

    def _save(self, force: bool = False) -> None:
        """Write the progress durably (throttled unless `force`)."""
        now = time.monotonic()
        if not force and now - self._last_save < SAVE_EVERY_S:
            self._unsaved = True
            return
        self._last_save = now
        self._unsaved = False
        write_atomic(self.settings.run_dir / PROGRESS_FILE, _JSON.encode(self.progress))

    def _saved_bars(self, sent: int, replaced: bool) -> None:
        """Save after bars were sent; after a replaced file, at once, then drop unused pins."""
        if replaced:
            self._save(force=True)
            prune_pins(self.settings, self.progress)
        elif sent:
            self._save()

    def _failed(self, sink: SinkState, exc: BaseException) -> None:
        error = " ".join(f"{type(exc).__name__}: {exc}".split()).rstrip(":")[:300]
        sink.connected = False
        self.counters.errors += 1
        if sink.failing_since_ms is None:
            sink.failing_since_ms = self.clock.now_ms()
        if error != sink.last_error:  # one line per distinct error while it lasts
            self.log.error("sink_unavailable", sink=sink.name, error=error)
        sink.last_error = error

    def _recovered(self, sink: SinkState) -> None:
        if not sink.connected:
            self.log.info("sink_connected", sink=sink.name)
        sink.connected = True
        sink.last_error = ""
        sink.failing_since_ms = None

    async def _pause(self, backoff: Backoff) -> None:
        delay = backoff.next_delay()
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self.stop.is_set():
            await asyncio.sleep(min(WATCH_S, delay))

    # --- NATS: trades and bars ------------------------------------------------------------

    async def _nats_loop(self) -> None:
        from hlstream.services.relay.nats_io import NatsError, NatsSink

        s = self.settings
        backoff = Backoff(s.backoff_base_seconds, s.backoff_cap_seconds, self._rng)
        while not self.stop.is_set():
            sink = NatsSink(s, self.secrets, self._nats_event)
            try:
                await sink.connect()
                self._recovered(self.nats)
                backoff.reset()
                await asyncio.gather(self._trades_session(sink), self._nats_bars_session(sink))
            except NatsError as exc:
                self._failed(self.nats, exc)
            finally:
                await sink.close()
            if not self.stop.is_set():
                await self._pause(backoff)

    def _nats_event(self, event: str, detail: str) -> None:
        if event == "nats_disconnected":
            self.nats.connected = False
        elif event == "nats_reconnected":
            self.nats.connected = True
        self.log.debug(event, detail=detail)

    def _coins(self) -> tuple[str, ...]:
        return self.settings.coins

    def _positions(self, coin: str) -> list[TapePosition]:
        return [
            TapePosition(coin, day, off) for day, off in self.progress.tape.get(coin, {}).items()
        ]

    def _resume_times(self) -> list[int]:
        times = []
        for coin in self._coins():
            resume = self.progress.resume_ts_ms.get(coin)
            if resume is None:
                first = next(read_since(self.settings.data_dir, coin, []), None)
                if first is None:
                    continue
                resume = record_time_ms(first[0])
            times.append(resume)
        return times

    async def _read_back(self, sink: object, start_ms: int) -> set[str]:
        from hlstream.services.relay.nats_io import NatsSink

        assert isinstance(sink, NatsSink)
        self.counters.read_backs += 1
        ids = await sink.read_ids(TRADES_STREAM, [TRADE_PREFIX + ">", GAP_PREFIX + ">"], start_ms)
        self.log.info("read_back", stream=TRADES_STREAM, from_ms=start_ms, ids=len(ids))
        return ids

    def _read_batch(self) -> tuple[list[Record], dict[str, dict[str, int]]]:
        """Up to BATCH_RECORDS tape records after the saved positions, and where they end."""
        records: list[Record] = []
        ends: dict[str, dict[str, int]] = {}
        per_coin = max(256, BATCH_RECORDS // max(1, len(self._coins())))
        for coin in self._coins():
            tape = read_since(self.settings.data_dir, coin, self._positions(coin))
            for taken, (record, pos) in enumerate(tape, 1):
                records.append(record)
                ends.setdefault(coin, {})[pos.day] = pos.offset
                if taken >= per_coin:
                    break
        return records, ends

    async def _trades_session(self, sink: object) -> None:
        from hlstream.services.relay.nats_io import NatsSink

        assert isinstance(sink, NatsSink)
        window_ms = int(self.settings.nats_duplicate_window_seconds * 1000)
        present = await self._read_back(sink, read_back_start_ms(self._resume_times()))
        last_read_back = time.monotonic()
        while not self.stop.is_set():
            records, ends = self._read_batch()
            if not records:
                self.counters.lag_trades = 0
                self.counters.pending_since_ms = None
                await asyncio.sleep(POLL_S)
                continue
            now_ms = self.clock.now_ms()
            self.counters.lag_trades = len(records)
            if self.counters.pending_since_ms is None:
                self.counters.pending_since_ms = now_ms
            oldest = min(record_time_ms(r) for r in records)
            if oldest < now_ms - window_ms // 2 and (
                time.monotonic() - last_read_back > window_ms / 4000
            ):
                # Catching up: another host may have published these since the last read.
                present = await self._read_back(sink, oldest - READ_BACK_MARGIN_MS)
                last_read_back = time.monotonic()
            out, skipped = plan_records(records, present, now_ms * 1000)
            acked, duplicates = await sink.publish(out)
            self.counters.published += acked
            self.counters.duplicates += duplicates
            self.counters.skipped += skipped
            for coin, days in ends.items():
                self.progress.tape.setdefault(coin, {}).update(days)
            for record in records:
                newest = self.progress.resume_ts_ms.get(record.coin, 0)
                self.progress.resume_ts_ms[record.coin] = max(newest, record_time_ms(record))
            self._drop_old_days()
            self.counters.pending_since_ms = None
            self.counters.lag_trades = 0
            if self.on_acked is not None:
                self.on_acked(records, self.clock.now_ms())
            if len(present) > PRUNE_IDS_ABOVE:
                present = _prune(present, read_back_start_ms(self._resume_times()))
            self._save()

    def _drop_old_days(self) -> None:
        """Keep each coin's positions of its two newest days (late trades go to yesterday)."""
        for days in self.progress.tape.values():
            for day in sorted(days)[:-2]:
                del days[day]

    async def _nats_bars_session(self, sink: object) -> None:
        from hlstream.services.relay.nats_io import NatsSink

        assert isinstance(sink, NatsSink)
        saved = self.progress.bars_saved_ms
        start = max(0, saved - READ_BACK_MARGIN_MS) if saved else 0
        present = await sink.read_ids(BARS_STREAM, [BAR_PREFIX + ">"], start)

        async def send(bars: list[JsBar]) -> None:
            out = [
                Outgoing(
                    bar_subject(b.interval, b.coin),
                    bar_msg_id(b.interval, b.coin, b.start_ms, b.revision),
                    bar_payload(b),
                )
                for b in bars
            ]
            fresh = [m for m in out if m.msg_id not in present]
            _, duplicates = await sink.publish(fresh)
            self.counters.bars_published += len(fresh)
            self.counters.duplicates += duplicates

        while not self.stop.is_set():
            sent, replaced = await follow_bars(self.settings, self.progress.nats_bars, send)
            if sent:
                self.progress.bars_saved_ms = self.clock.now_ms()
            self._saved_bars(sent, replaced)
            await asyncio.sleep(BAR_POLL_S)

    # --- PostgreSQL -------------------------------------------------------------------------

    async def _postgres_loop(self) -> None:
        from hlstream.services.relay.postgres_io import PostgresError, PostgresSink

        s = self.settings
        backoff = Backoff(s.backoff_base_seconds, s.backoff_cap_seconds, self._rng)
        sink = PostgresSink(s, self.secrets)

        async def send(bars: list[JsBar]) -> None:
            await asyncio.to_thread(sink.upsert, bars)
            self.counters.bars_upserted += len(bars)

        while not self.stop.is_set():
            try:
                if not sink.connected:
                    await asyncio.to_thread(sink.connect)
                    self._recovered(self.postgres)
                    backoff.reset()
                self._saved_bars(
                    *await follow_bars(self.settings, self.progress.postgres_bars, send)
                )
                await asyncio.sleep(BAR_POLL_S)
            except PostgresError as exc:
                self._failed(self.postgres, exc)
                sink.close()
                await self._pause(backoff)
        sink.close()

    # --- status ---------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            if self._unsaved:
                self._save()
            self._write_status()
            await asyncio.sleep(STATUS_EVERY_S)

    def _write_status(self) -> None:
        c = self.counters
        now_ms = self.clock.now_ms()
        lag_s = (now_ms - c.pending_since_ms) / 1000 if c.pending_since_ms is not None else 0.0
        status = RelayStatus(
            service=SERVICE,
            ts_ms=now_ms,
            pid=os.getpid(),
            nats=self.nats.status(),
            postgres=self.postgres.status(),
            lag_s=lag_s,
            lag_trades=c.lag_trades,
            lag_bytes=lag_bytes(self.settings, self.progress) if self.nats.configured else 0,
            published=c.published,
            duplicates=c.duplicates,
            skipped=c.skipped,
            bars_published=c.bars_published,
            bars_upserted=c.bars_upserted,
            errors=c.errors,
        )
        with contextlib.suppress(OSError):
            write_atomic(status_path(self.settings.run_dir), _JSON.encode(status), durable=False)


def _prune(ids: set[str], start_ms: int) -> set[str]:
    """The ids whose time (the second field from the end) is at or after `start_ms`."""
    return {i for i in ids if int(i.rsplit(":", 2)[1]) >= start_ms}
