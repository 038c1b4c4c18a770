"""Aggregator IO shell: recover (recovery.py), then follow ingest on the bus, close windows
on the wall clock, publish bars for taps and hand them to the writer (link.py).

Windows close only up to ingest's `covered_ms` (everything received before it is taped and
published); after HOLD_MAX_MS without coverage they close anyway and the uncovered time is
tainted (bars marked partial; the writer repairs 1m+ from REST)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import zmq

from hlstream.common.bus_io import Publisher, curve_keys, subscribe_socket
from hlstream.common.durable import write_atomic
from hlstream.common.errors import IntegrityError, ProtocolError
from hlstream.common.messages import (
    Bar,
    Decoder,
    Gap,
    Inexact,
    LateTrade,
    Trade,
    TradeBatch,
    bar_topic,
    late_topic,
    status_topic,
)
from hlstream.common.sequence import SeqEvent, SeqTracker
from hlstream.common.stage_io import Stage
from hlstream.common.status import StageStatus
from hlstream.common.status_io import write_status
from hlstream.common.tape.format import Record, segment_day, shift_day
from hlstream.common.tape.readers_io import coverage_start_ms
from hlstream.services.aggregator import core, recovery
from hlstream.services.aggregator.checkpoint import encode_checkpoint
from hlstream.services.aggregator.link import WriterLink, connect_writer
from hlstream.services.aggregator.tape_feed import SpanAction, TapeFeed

SERVICE = "aggregator"
HOLD_MAX_MS = 10_000  # hold windows this long for ingest to vouch for them, then taint
SUBSCRIBE_SETTLE_S = 0.3  # let SUB subscriptions reach the publisher before joining
IDLE_POLL_MS = 200  # longest poll when no window is due
MIN_POLL_MS = 5
TICK_MS = 5  # bar timing, resends, heartbeat: checked at most this often under load
COALESCE_S = 0.002  # woken by the bus: wait this long for the rest of a burst, then drain
STALL_SLACK_MS = 250  # a poll that overran its wait by more than this was a stall
SETTLE_QUIET_MS = 20  # after a stall, drain the bus until it is quiet this long
SETTLE_MAX_MS = 500  # ... or this long in all
DRAIN_LIMIT = 2_000  # bus messages handled per drain, so timers still run under a flood
STATUS_EVERY_S = 1.0
CLOSE_WAIT_S = 1.0  # on stop, wait this long for the writer's acks of bars in flight
ACK_POLL_MS = 100
LOG_EVERY_S = 5.0  # a repeated warning is logged at most this often
_READ_BUS: Decoder[TradeBatch | Gap | StageStatus] = Decoder((TradeBatch, Gap, StageStatus))


@dataclass
class Counters:
    """What the aggregator counts since it started (also in its status)."""

    malformed: int = 0
    bars: int = 0
    lost_messages: int = 0
    tape_reads: int = 0
    replayed: int = 0
    gaps: int = 0
    gaps_after_close: int = 0
    held_ms: int = 0


class Aggregator:
    """Owns the sockets, the clock and the tape positions around the pure bar state."""

    sub: zmq.Socket[Any]
    taps: Publisher
    link: WriterLink
    state: core.AggState
    tape: TapeFeed

    def __init__(self, stage: Stage, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings, self.stop, self.log = stage.settings, stage.stop, stage.log
        self.context, self.clock, self.sleep = stage.context, stage.clock, sleep
        self.seq = SeqTracker()
        self.counters = Counters()
        self.checkpoint_path = stage.settings.run_dir / recovery.CHECKPOINT_FILE
        self.started_ms = 0
        self.covered_ms = 0  # ingest vouched that everything before this is published
        self.outage_from: int | None = None
        self.untaped: set[str] = set()  # coins whose tape was empty when we started

    def run(self) -> None:
        """Connect, recover, then follow the bus until stopped."""
        self._connect()
        self._recover()
        self._loop()
        self.close()

    def _connect(self) -> None:
        curve = curve_keys(self.settings)
        self.sub = subscribe_socket(
            self.context,
            self.settings.trades_endpoint,
            ["trade.", "gap.", status_topic("ingest")],
            curve=curve,
        )
        self.taps = Publisher(self.context, self.settings.bars_endpoint, curve=curve)
        writer = connect_writer(self.context, self.settings.writer_endpoint, curve)
        self.link = WriterLink(writer, lambda: self.taps.next_envelope("writer"), self.log)
        self.sleep(SUBSCRIBE_SETTLE_S)  # bus messages queue up from here while we replay

    def _recover(self) -> None:
        now = self.started_ms = self.clock.now_ms()
        restored = recovery.restore(self.settings, self.log, now)
        self.state, self.covered_ms = restored.state, restored.covered_ms
        self.tape = TapeFeed(self.settings.data_dir, self.log, restored.consumed)
        for item in restored.pending:
            self.link.queue(item)
        replayed = partial(self._apply_trades, publish_late=False)
        self.untaped = recovery.replay(
            self.state, self.tape, self.settings, self.log, now, replayed, self._on_gap
        )
        series = len(self.state.series)
        self.log.info("tape_replayed", trades=self.counters.replayed, joined_ms=now, series=series)

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.link.socket, zmq.POLLIN)
        poller.register(self.stop.fileno(), zmq.POLLIN)  # a stop wakes the poll at once
        next_status = 0.0
        next_checkpoint = self.clock.monotonic() + self.settings.checkpoint_seconds
        next_tick = 0  # bar timing and writer resends: every TICK_MS at most (not per wakeup)
        while not self.stop.is_set():
            loop_start = self.clock.now_ms()
            deadline = core.next_deadline(self.state)
            wait_ms = IDLE_POLL_MS
            if deadline is not None:
                wait_ms = max(MIN_POLL_MS, min(IDLE_POLL_MS, deadline - loop_start))
            ready = dict(poller.poll(wait_ms))
            if self.sub in ready:
                # Let the rest of the burst land first: one wakeup per message costs more
                # than the message, and bars close seconds later anyway.
                self.sleep(COALESCE_S)
                self._drain_bus()
            if self.link.socket in ready:
                self.link.drain_acks()
            now = self.clock.now_ms()
            if now < next_tick and (deadline is None or now < deadline):
                continue  # under load the bus wakes us per message: time work can wait
            next_tick = now + TICK_MS
            stalled_ms = now - loop_start - wait_ms
            if deadline is not None and now >= deadline and stalled_ms > STALL_SLACK_MS:
                # After a stall (SIGSTOP, VM pause) trades that came in time still sit in the
                # socket buffers: take them before closing windows, or they would be late.
                self.log.warning("stall_detected", stalled_ms=stalled_ms)
                self._settle_bus()
                now = self.clock.now_ms()
            for bar in core.advance(self.state, self._horizon(now)):
                self._emit(bar)
            self.link.send_due(now)
            if self.clock.monotonic() >= next_status:
                next_status = self.clock.monotonic() + STATUS_EVERY_S
                self._heartbeat(now)
            if self.clock.monotonic() >= next_checkpoint:
                next_checkpoint = self.clock.monotonic() + self.settings.checkpoint_seconds
                self.save_checkpoint(now)

    def _horizon(self, now: int) -> int:
        """Close windows only up to what ingest vouches for, unless it has been gone too long."""
        if now <= max(self.covered_ms, self.started_ms) + HOLD_MAX_MS:
            return min(now, self.covered_ms)
        if self.outage_from is None:
            self.outage_from = self.covered_ms
            self.log.warning("feed_not_covered", since_ms=self.covered_ms, held_ms=HOLD_MAX_MS)
        core.taint(self.state, None, self.outage_from, now)
        return now

    def _settle_bus(self) -> None:
        """Drain the bus until it has been quiet for SETTLE_QUIET_MS (at most SETTLE_MAX_MS)."""
        give_up = self.clock.monotonic() + SETTLE_MAX_MS / 1000
        while self.clock.monotonic() < give_up and self.sub.poll(SETTLE_QUIET_MS, zmq.POLLIN):
            self._drain_bus()

    def _drain_bus(self) -> None:
        for _ in range(DRAIN_LIMIT):
            try:
                frames = self.sub.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._handle(frames)
            except (ProtocolError, UnicodeDecodeError) as exc:
                self.counters.malformed += 1
                self.log.warning_limited(
                    "malformed", LOG_EVERY_S, "malformed_frame", error=str(exc)[:200]
                )

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            raise ProtocolError(f"expected 2 frames, got {len(frames)}")
        topic = frames[0].decode("ascii")
        envelope, message = _READ_BUS.decode(frames[1])
        event, skipped = self.seq.observe(topic, envelope.session, envelope.seq)
        if event is SeqEvent.LOSS:  # repaired from the tape by the span check below
            self.counters.lost_messages += skipped
            self.log.warning_limited(
                "loss:" + topic, LOG_EVERY_S, "bus_loss", topic=topic, skipped=skipped
            )
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
        """A coin's tape, empty at start, covers it from its first record (the venue's replay)."""
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
        late = core.apply_trades(self.state, trades)
        if late:
            core.seed_trades(self.state, [item.trade for item in late])
        if not publish_late:
            self.counters.replayed += len(trades)
            return
        for item in late:
            self.taps.publish(
                late_topic(item.trade.coin), LateTrade(item.interval, item.window_ms, item.trade)
            )
        if late:
            self.log.warning_limited(
                "late", LOG_EVERY_S, "late_trades", total=self.state.late_trades
            )

    def _on_gap(self, gap: Gap) -> None:
        self.counters.gaps += 1
        self.log.warning(
            "gap_marker", coin=gap.coin, from_ms=gap.from_ms, to_ms=gap.to_ms, reason=gap.reason
        )
        emitted = core.taint(self.state, gap.coin, gap.from_ms, gap.to_ms)
        for e in emitted:  # the writer records those rows as not exact
            self.link.queue(Inexact(gap.coin, e.interval, e.first_ms, e.last_ms, "gap_after_close"))
        if emitted:
            self.counters.gaps_after_close += 1
            self.log.error(
                "gap_after_close",
                coin=gap.coin,
                windows=sum(e.windows for e in emitted),
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
            if core.retire_coin(self.state, coin):
                self.log.error("coin_retired", coin=coin, reason="delisted by the venue")

    def _on_covered(self, covered_ms: int) -> None:
        """Ingest vouches that everything it received before `covered_ms` is published."""
        if covered_ms > self.covered_ms:
            if self.outage_from is not None:
                self.log.info("feed_covered_again", after_ms=covered_ms - self.outage_from)
                self.outage_from = None
            self.covered_ms = covered_ms

    def _emit(self, bar: Bar) -> None:
        self.taps.publish(bar_topic(bar.interval, bar.coin), bar)
        self.link.queue(bar)
        self.counters.bars += 1
        fields = {"coin": bar.coin, "interval": bar.interval, "start_ms": bar.start_ms}
        self.log.debug("bar", **fields, trades=bar.trades, complete=bar.complete)

    def save_checkpoint(self, now: int) -> None:
        """Bar state + tape positions + un-acked bars, replaced atomically."""
        self.tape.prune(shift_day(segment_day(now), -1))
        data = encode_checkpoint(
            self.state, self.tape.consumed, self.link.pending(), self.covered_ms
        )
        try:
            write_atomic(self.checkpoint_path, data)
        except OSError as exc:
            self.log.error_limited("checkpoint", 30, "checkpoint_failed", error=str(exc))

    def _heartbeat(self, now: int) -> None:
        held = max(0, now - self.covered_ms)
        self.counters.held_ms = held if held > self.settings.grace_seconds * 1000 else 0
        link, outbox = self.link, self.link.outbox
        counters = {
            "trades": self.state.applied_trades,
            "late_trades": self.state.late_trades,
            "pending_bars": outbox.size,
            "dropped_bars": outbox.dropped,
            "resent_bars": outbox.resent,
            "acks": link.acks,
            **asdict(self.counters),
        }
        counters["malformed"] += link.malformed
        status = StageStatus(SERVICE, now, os.getpid(), self.taps.session, counters)
        self.taps.publish(status_topic(SERVICE), status)
        write_status(self.settings.run_dir, status)

    def close(self) -> None:
        """Checkpoint, give in-flight bars a moment to reach the writer, then close sockets."""
        self.save_checkpoint(self.clock.now_ms())
        self.link.flush(CLOSE_WAIT_S, self.clock.monotonic, ACK_POLL_MS)
        if self.link.outbox.size:
            self.log.warning(
                "unacked_at_exit", bars=self.link.outbox.size, note="in the checkpoint"
            )
        self.save_checkpoint(self.clock.now_ms())
        self.log.info("stopped", bars=self.counters.bars, trades=self.state.applied_trades)
        self.sub.close()
        self.link.socket.close()
        self.taps.close()
