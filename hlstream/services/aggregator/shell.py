"""Aggregator IO shell: replay the trade tape, follow ingest on the bus, drive the bar core
with the wall clock, publish bars for taps (PUB) and hand them to the writer (DEALER, acked
after fsync).

Start: load the checkpoint (bar state + tape positions, services/aggregator/checkpoint.py),
then replay the tape from those positions, so the window the last process died in and every
window that closed while it was down are rebuilt exactly. Without a checkpoint (first start,
new coin) the tape is replayed from the earliest open window, the last close is seeded from
the tape (an illiquid coin gets carry-forward rows from the first window), and a window
counts as complete when the tape covers it from its start.

Loop: poll sockets until the next window deadline -> apply trades / gaps / status (a bus
message whose tape span was already applied is skipped; one that follows lost messages is
read from the tape instead) -> `advance(horizon)` -> publish closed bars, queue them in the
outbox -> send due outbox heads -> checkpoint every `checkpoint_seconds`.

Windows are held while ingest cannot vouch for them: the horizon is ingest's `covered_ms`
(everything received before it is taped and published), so an ingest restart whose replay
covers the outage changes nothing. After HOLD_MAX_MS without coverage the windows close and
the uncovered time is tainted (bars marked partial; the writer repairs 1m+ from REST).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from hlstream.common.bus_io import Publisher, curve_keys, secure_client, subscribe_socket
from hlstream.common.clock import Clock
from hlstream.common.config import Settings
from hlstream.common.durable import write_atomic
from hlstream.common.errors import IntegrityError, ProtocolError
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import (
    NOTICE_SERIES,
    Bar,
    BarAck,
    Decoder,
    Gap,
    Inexact,
    LateTrade,
    Trade,
    TradeBatch,
    bar_topic,
    encode_message,
    late_topic,
    status_topic,
)
from hlstream.common.sequence import SeqEvent, SeqTracker
from hlstream.common.status import StageStatus
from hlstream.common.status_io import write_status
from hlstream.common.tape.format import Record, segment_day, shift_day
from hlstream.common.tape.readers_io import coverage_start_ms, last_trade_before
from hlstream.services.aggregator.checkpoint import decode_checkpoint, encode_checkpoint
from hlstream.services.aggregator.core import (
    AggState,
    advance,
    apply_trades,
    emitted_windows,
    new_state,
    next_deadline,
    retire_coin,
    seed_closes,
    seed_trades,
    taint,
)
from hlstream.services.aggregator.outbox import Outbox
from hlstream.services.aggregator.tape_feed import SpanAction, TapeFeed

SERVICE = "aggregator"
CHECKPOINT_FILE = "aggregator-checkpoint.msgpack"
HOLD_MAX_MS = 10_000  # hold windows this long for ingest to vouch for them, then taint
SUBSCRIBE_SETTLE_S = 0.3  # let SUB subscriptions reach the publisher before joining
REPLAY_CHUNK = 5_000
TICK_MS = 5  # bar timing, resends, heartbeat: checked at most this often under load
COALESCE_S = 0.002  # woken by the bus: wait this long for the rest of a burst, then drain
# One Decoder per socket, of the message types that socket carries (any other is refused).
_READ_BUS: Decoder[TradeBatch | Gap | StageStatus] = Decoder((TradeBatch, Gap, StageStatus))
_READ_ACK: Decoder[BarAck] = Decoder((BarAck,))
_READ_OUTBOX: Decoder[Bar | Inexact] = Decoder((Bar, Inexact))


@dataclass
class Counters:
    """What the aggregator counts since it started (also in its status)."""

    malformed: int = 0
    bars: int = 0
    lost_messages: int = 0
    tape_reads: int = 0
    replayed: int = 0
    acks: int = 0
    gaps: int = 0
    gaps_after_close: int = 0
    held_ms: int = 0


def _frame_of(key: tuple[str, str, int]) -> bytes:
    return b"inexact" if key[1].endswith(NOTICE_SERIES) else b"bar"


class Aggregator:
    """Owns the sockets, the clock and the tape positions around the pure bar state."""

    def __init__(
        self,
        settings: Settings,
        stop: StopFlag,
        log: EventLog,
        context: zmq.Context[Any],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.log = log
        self.clock = clock
        self.context = context
        curve = curve_keys(settings)
        self.sub = subscribe_socket(
            self.context,
            settings.trades_endpoint,
            ["trade.", "gap.", status_topic("ingest")],
            curve=curve,
        )
        self.taps = Publisher(self.context, settings.bars_endpoint, curve=curve)
        self.writer = self.context.socket(zmq.DEALER)
        self.writer.setsockopt(zmq.LINGER, 0)
        self.writer.setsockopt(zmq.SNDHWM, 100_000)
        secure_client(self.writer, curve)
        self.writer.connect(settings.writer_endpoint)
        self.outbox = Outbox()
        self.seq = SeqTracker()
        self.counters = Counters()
        self.checkpoint_path = settings.run_dir / CHECKPOINT_FILE
        time.sleep(SUBSCRIBE_SETTLE_S)  # bus messages queue up from here while we replay
        now = self.clock.now_ms()
        self.covered_ms = now  # first start: nothing open ends before now (new_state)
        self.started_ms = now
        self.outage_from: int | None = None
        self.untaped: set[str] = set()  # coins whose tape was empty when we started
        self.state, self.tape = self._restore(now)
        self._replay_tape(now)
        self.next_checkpoint = self.clock.monotonic() + settings.checkpoint_seconds

    # ---- start: checkpoint + tape ------------------------------------------------------

    def _restore(self, now: int) -> tuple[AggState, TapeFeed]:
        grace_ms = int(self.settings.grace_seconds * 1000)
        fresh = new_state(self.settings.coins, self.settings.interval_ms, grace_ms, now)
        try:
            raw = self.checkpoint_path.read_bytes()
        except FileNotFoundError:
            self.log.info("checkpoint_absent", path=str(self.checkpoint_path))
            return fresh, TapeFeed(self.settings.data_dir, self.log)
        try:
            checkpoint = decode_checkpoint(raw)
        except ProtocolError as exc:
            self.log.error("checkpoint_unreadable", path=str(self.checkpoint_path), error=str(exc))
            return fresh, TapeFeed(self.settings.data_dir, self.log)
        state = checkpoint.state
        if set(state.series) != set(fresh.series) or state.grace_ms != grace_ms:
            self.log.warning("checkpoint_ignored", reason="coins, intervals or grace changed")
            return fresh, TapeFeed(self.settings.data_dir, self.log)
        for item in checkpoint.pending:
            self._queue_for_writer(item)
        # Windows after what ingest had vouched for wait until it vouches again (or HOLD_MAX).
        self.covered_ms = min(now, checkpoint.covered_ms)
        self.log.info(
            "checkpoint_loaded",
            series=len(state.series),
            pending_bars=len(checkpoint.pending),
            covered_ms=checkpoint.covered_ms,
        )
        return state, TapeFeed(self.settings.data_dir, self.log, checkpoint.consumed)

    def _replay_tape(self, now: int) -> None:
        for coin, series in list(self.state.by_coin.items()):
            from_ms = min(item.closed_through for item in series)
            first_sight = not self.tape.positions(coin)
            if first_sight:
                self._seed_coin(coin, from_ms, now)
            batch: list[Trade] = []
            try:
                for record in self.tape.replay(coin, from_ms):
                    if isinstance(record, Gap):
                        self._apply_trades(batch, publish_late=False)
                        batch = []
                        self._on_gap(record)
                    elif first_sight and record.ts_ms < from_ms:
                        seed_trades(self.state, [record])  # taped since _seed_coin read
                    else:
                        batch.append(record)
                        if len(batch) >= REPLAY_CHUNK:
                            self._apply_trades(batch, publish_late=False)
                            batch = []
            except (IntegrityError, OSError) as exc:
                self.log.error("tape_replay_failed", coin=coin, error=str(exc))
                taint(self.state, coin, from_ms, now)
            self._apply_trades(batch, publish_late=False)
        self.log.info(
            "tape_replayed",
            trades=self.counters.replayed,
            joined_ms=now,
            series=len(self.state.series),
        )

    def _seed_coin(self, coin: str, from_ms: int, now: int) -> None:
        """A coin seen for the first time: coverage and last close from the tape."""
        start = coverage_start_ms(self.settings.data_dir, coin)
        self.state.joined_by_coin[coin] = now if start is None else start
        if start is None:  # the tape will cover it from its first trade (the venue's replay)
            self.untaped.add(coin)
        last = last_trade_before(self.settings.data_dir, coin, from_ms)
        if last is not None:
            seed_trades(self.state, [last])

    # ---- loop ------------------------------------------------------------------------

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.writer, zmq.POLLIN)
        poller.register(self.stop.fileno(), zmq.POLLIN)  # a stop wakes the poll at once
        next_status = 0.0
        next_tick = 0  # bar timing and writer resends: every TICK_MS at most (not per wakeup)
        while not self.stop.is_set():
            loop_start = self.clock.now_ms()
            deadline = next_deadline(self.state)
            wait_ms = 200 if deadline is None else max(5, min(200, deadline - loop_start))
            ready = dict(poller.poll(wait_ms))
            if self.sub in ready:
                # Let the rest of the burst land first: one wakeup per message costs more
                # than the message, and handling the first while ingest still publishes the
                # others would take the core the trade taps need; bars close seconds later.
                time.sleep(COALESCE_S)
                self._drain_bus()
            if self.writer in ready:
                self._drain_acks()
            now = self.clock.now_ms()
            if now < next_tick and (deadline is None or now < deadline):
                continue  # under load the bus wakes us per message: time work can wait
            next_tick = now + TICK_MS
            if deadline is not None and now >= deadline and now - loop_start > wait_ms + 250:
                # About to close windows after a stall (SIGSTOP, VM pause, CPU starvation):
                # the wall clock has jumped while trades that arrived in time still sit in the
                # socket buffers. Take them first, or they would count as late.
                self.log.warning("stall_detected", stalled_ms=now - loop_start - wait_ms)
                self._settle_bus()
                now = self.clock.now_ms()
            for bar in advance(self.state, self._horizon(now)):
                self._emit(bar)
            for key, payload in self.outbox.due(now):
                try:
                    self.writer.send_multipart([_frame_of(key), payload], flags=zmq.NOBLOCK)
                except zmq.Again:
                    self.log.warning_limited("writer_full", 5, "writer_queue_full", bar=key)
            if self.clock.monotonic() >= next_status:
                next_status = self.clock.monotonic() + 1.0
                self._heartbeat(now)
            if self.clock.monotonic() >= self.next_checkpoint:
                self.next_checkpoint = self.clock.monotonic() + self.settings.checkpoint_seconds
                self.save_checkpoint(now)
        self.close()

    def _horizon(self, now: int) -> int:
        """Close windows only up to what ingest vouches for, unless it has been gone too long."""
        if now <= max(self.covered_ms, self.started_ms) + HOLD_MAX_MS:
            return min(now, self.covered_ms)
        if self.outage_from is None:
            self.outage_from = self.covered_ms
            self.log.warning("feed_not_covered", since_ms=self.covered_ms, held_ms=HOLD_MAX_MS)
        taint(self.state, None, self.outage_from, now)
        return now

    def _settle_bus(self, quiet_ms: int = 20, max_ms: int = 500) -> None:
        """Drain the bus until it has been quiet for `quiet_ms` (at most `max_ms`)."""
        give_up = self.clock.monotonic() + max_ms / 1000
        while self.clock.monotonic() < give_up and self.sub.poll(quiet_ms, zmq.POLLIN):
            self._drain_bus()

    def _drain_bus(self, limit: int = 2_000) -> None:
        for _ in range(limit):
            try:
                frames = self.sub.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._handle(frames)
            except (ProtocolError, UnicodeDecodeError) as exc:
                self.counters.malformed += 1
                self.log.warning_limited("malformed", 5, "malformed_frame", error=str(exc)[:200])

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            raise ProtocolError(f"expected 2 frames, got {len(frames)}")
        topic = frames[0].decode("ascii")
        envelope, message = _READ_BUS.decode(frames[1])
        event, skipped = self.seq.observe(topic, envelope.session, envelope.seq)
        if event is SeqEvent.LOSS:  # repaired from the tape by the span check below
            self.counters.lost_messages += skipped
            self.log.warning_limited("loss:" + topic, 5, "bus_loss", topic=topic, skipped=skipped)
        if isinstance(message, StageStatus):
            self._on_ingest_status(message)
        else:
            self._on_tape_message(message)

    def _on_tape_message(self, message: TradeBatch | Gap) -> None:
        if message.coin in self.untaped:
            self._covered_from_tape_start(message.coin)
        span = message.tape
        action = SpanAction.APPLY if span is None else self.tape.action(message.coin, span)
        if action is SpanAction.SKIP:
            return
        if action is SpanAction.APPLY:
            self._apply_record(message)
        else:
            assert span is not None
            self.counters.tape_reads += 1
            try:
                records = list(self.tape.read(message.coin, span))
            except (IntegrityError, OSError) as exc:
                self.log.error("tape_read_failed", coin=message.coin, error=str(exc))
                records = []
            for record in records:
                self._apply_record(record)
        if span is not None:
            self.tape.mark(message.coin, span)
        if isinstance(message, TradeBatch) and message.covered_ms:
            self._on_covered(message.covered_ms)

    def _covered_from_tape_start(self, coin: str) -> None:
        """The first tape record of a coin whose tape was empty at start: the tape (the venue's
        subscribe replay first) covers the coin from just after its oldest replayed trade, so
        windows from there on were watched whole."""
        self.untaped.discard(coin)
        start = coverage_start_ms(self.settings.data_dir, coin)
        if start is not None and start < self.state.joined_by_coin.get(coin, start):
            self.state.joined_by_coin[coin] = start
            self.log.info("covered_from_tape", coin=coin, from_ms=start)

    def _apply_record(self, record: TradeBatch | Record) -> None:
        if isinstance(record, TradeBatch):
            self._apply_trades(list(record.trades), publish_late=True)
        elif isinstance(record, Trade):
            self._apply_trades([record], publish_late=True)
        else:
            self._on_gap(record)

    def _apply_trades(self, trades: list[Trade], publish_late: bool) -> None:
        if not trades:
            return
        late = apply_trades(self.state, trades)
        if late:
            seed_closes(self.state, late)  # the venue's subscribe replay gives a coin its close
        if not publish_late:
            self.counters.replayed += len(trades)
            return
        for item in late:
            self.taps.publish(
                late_topic(item.trade.coin), LateTrade(item.interval, item.window_ms, item.trade)
            )
        if late:
            self.log.warning_limited("late", 5, "late_trades", total=self.state.late_trades)

    def _on_gap(self, gap: Gap) -> None:
        self.counters.gaps += 1
        self.log.warning(
            "gap_marker", coin=gap.coin, from_ms=gap.from_ms, to_ms=gap.to_ms, reason=gap.reason
        )
        notices = [
            Inexact(gap.coin, interval, first, last, "gap_after_close")
            for interval, first, last in emitted_windows(
                self.state, gap.coin, gap.from_ms, gap.to_ms
            )
        ]
        emitted = taint(self.state, gap.coin, gap.from_ms, gap.to_ms)
        for notice in notices:  # the writer records those rows as not exact
            self._queue_for_writer(notice)
        if emitted:
            # Those bars are already with the writer; they may miss trades of the gap.
            self.counters.gaps_after_close += 1
            self.log.error(
                "gap_after_close",
                coin=gap.coin,
                windows=emitted,
                from_ms=gap.from_ms,
                to_ms=gap.to_ms,
                note="bars already emitted for these windows may miss trades",
            )

    def _on_ingest_status(self, status: StageStatus) -> None:
        feed = status.feed
        if feed is None:
            return
        self._on_covered(feed.covered_ms)
        for coin in feed.delisted:
            if retire_coin(self.state, coin):
                self.log.error("coin_retired", coin=coin, reason="delisted by the venue")

    def _on_covered(self, covered_ms: int) -> None:
        """Ingest vouches that everything it received before `covered_ms` is published."""
        if covered_ms > self.covered_ms:
            if self.outage_from is not None:
                self.log.info("feed_covered_again", after_ms=covered_ms - self.outage_from)
                self.outage_from = None
            self.covered_ms = covered_ms

    # ---- bars out ----------------------------------------------------------------------

    def _drain_acks(self) -> None:
        while True:
            try:
                frames = self.writer.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if len(frames) != 2 or frames[0] != b"ack":
                    raise ProtocolError("ack must be [b'ack', payload]")
                _, ack = _READ_ACK.decode(frames[1])
                key = (ack.coin, ack.interval, ack.start_ms)
            except ProtocolError as exc:
                self.counters.malformed += 1
                self.log.warning_limited("bad_ack", 5, "malformed_ack", error=str(exc)[:200])
                continue
            if self.outbox.ack(key):
                self.counters.acks += 1

    def _emit(self, bar: Bar) -> None:
        self.taps.publish(bar_topic(bar.interval, bar.coin), bar)
        self._queue_for_writer(bar)
        self.counters.bars += 1
        self.log.debug(
            "bar",
            coin=bar.coin,
            interval=bar.interval,
            start_ms=bar.start_ms,
            trades=bar.trades,
            complete=bar.complete,
        )

    def _queue_for_writer(self, item: Bar | Inexact) -> None:
        envelope = self.taps.next_envelope("writer")
        if isinstance(item, Bar):
            key = (item.coin, item.interval, item.start_ms)
        else:  # notices have a series of their own, so they never interleave with bars
            key = (item.coin, item.interval + NOTICE_SERIES, item.last_ms)
        self.outbox.add(key, encode_message(envelope, item))

    def _pending(self) -> list[Bar | Inexact]:
        items: list[Bar | Inexact] = []
        for payload in self.outbox.payloads():
            items.append(_READ_OUTBOX.decode(payload)[1])
        return items

    def save_checkpoint(self, now: int) -> None:
        """Bar state + tape positions + un-acked bars, replaced atomically."""
        self.tape.prune(shift_day(segment_day(now), -1))
        data = encode_checkpoint(self.state, self.tape.consumed, self._pending(), self.covered_ms)
        try:
            write_atomic(self.checkpoint_path, data)
        except OSError as exc:
            self.log.error_limited("checkpoint", 30, "checkpoint_failed", error=str(exc))

    def _heartbeat(self, now: int) -> None:
        held = max(0, now - self.covered_ms)
        self.counters.held_ms = held if held > self.settings.grace_seconds * 1000 else 0
        counters = {
            "trades": self.state.applied_trades,
            "late_trades": self.state.late_trades,
            "pending_bars": self.outbox.size,
            "dropped_bars": self.outbox.dropped,
            "resent_bars": self.outbox.resent,
            **asdict(self.counters),
        }
        status = StageStatus(SERVICE, now, os.getpid(), self.taps.session, counters)
        self.taps.publish(status_topic(SERVICE), status)
        write_status(self.settings.run_dir, status)

    def close(self) -> None:
        """Checkpoint, give in-flight bars a moment to reach the writer, then close sockets."""
        self.save_checkpoint(self.clock.now_ms())
        deadline = self.clock.monotonic() + 1.0
        while self.outbox.size and self.clock.monotonic() < deadline:
            if self.writer.poll(100, zmq.POLLIN):
                self._drain_acks()
        if self.outbox.size:
            self.log.warning("unacked_at_exit", bars=self.outbox.size, note="in the checkpoint")
        self.save_checkpoint(self.clock.now_ms())
        self.log.info("stopped", bars=self.counters.bars, trades=self.state.applied_trades)
        self.sub.close()
        self.writer.close()
        self.taps.close()
