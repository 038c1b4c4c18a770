"""Aggregator IO shell: subscribe to ingest, drive the bar core with the wall clock, publish
bars for taps (PUB) and hand them to the writer (DEALER, acked after fsync).

Loop: poll sockets until the next window deadline -> apply trades / gaps / status ->
`advance(now)` -> publish closed bars, queue them in the outbox -> send due outbox heads.
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
from hlstream.common.errors import ProtocolError
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import (
    Bar,
    BarAck,
    Gap,
    LateTrade,
    TradeBatch,
    bar_topic,
    decode_message,
    encode_message,
    kind_of,
    late_topic,
    status_topic,
)
from hlstream.common.sequence import SeqEvent, SeqTracker
from hlstream.common.status import StageStatus
from hlstream.common.status_io import write_status
from hlstream.services.aggregator.core import (
    AggState,
    advance,
    apply_trades,
    new_state,
    next_deadline,
    retire_coin,
    taint,
)
from hlstream.services.aggregator.outbox import Outbox

SERVICE = "aggregator"
INGEST_SILENT_MS = 3_000  # no ingest heartbeat for this long: treat the feed as down
SUBSCRIBE_SETTLE_S = 0.3  # let SUB subscriptions reach the publisher before joining


@dataclass
class Counters:
    """What the aggregator counts since it started (also in its status)."""

    malformed: int = 0
    bars: int = 0
    lost_messages: int = 0
    acks: int = 0
    gaps: int = 0
    gaps_after_close: int = 0


class Aggregator:
    """Owns the sockets and the clock around the pure bar state."""

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
        self.ingest_ok_ms = 0
        self.ingest_seen_ms = 0
        self.last_msg_ms: dict[str, int] = {}
        time.sleep(SUBSCRIBE_SETTLE_S)
        now = self.clock.now_ms()
        self.state: AggState = new_state(
            settings.coins, settings.interval_ms, int(settings.grace_seconds * 1000), now
        )
        self.log.info("joined", joined_ms=now, series=len(self.state.series))

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.writer, zmq.POLLIN)
        next_status = 0.0
        while not self.stop.is_set():
            loop_start = self.clock.now_ms()
            deadline = next_deadline(self.state)
            wait_ms = 200 if deadline is None else max(5, min(200, deadline - loop_start))
            ready = dict(poller.poll(wait_ms))
            if self.sub in ready:
                self._drain_bus()
            if self.writer in ready:
                self._drain_acks()
            now = self.clock.now_ms()
            if deadline is not None and now >= deadline and now - loop_start > wait_ms + 250:
                # About to close windows after a stall (SIGSTOP, VM pause, CPU starvation):
                # the wall clock has jumped while trades that arrived in time still sit in the
                # socket buffers. Take them first, or they would count as late.
                self.log.warning("stall_detected", stalled_ms=now - loop_start - wait_ms)
                self._settle_bus()
                now = self.clock.now_ms()
            for bar in advance(self.state, now):
                self._emit(bar)
            for key, payload in self.outbox.due(now):
                try:
                    self.writer.send_multipart([b"bar", payload], flags=zmq.NOBLOCK)
                except zmq.Again:
                    self.log.warning_limited("writer_full", 5, "writer_queue_full", bar=key)
            if self.clock.monotonic() >= next_status:
                next_status = self.clock.monotonic() + 1.0
                self._heartbeat(now)
        self.close()

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
        envelope, message = decode_message(frames[1])
        now = self.clock.now_ms()
        event, skipped = self.seq.observe(topic, envelope.session, envelope.seq)
        previous = self.last_msg_ms.get(topic, self.state.joined_ms)
        self.last_msg_ms[topic] = now
        if isinstance(message, StageStatus):
            self._on_ingest_status(message, now)
            return
        if event in (SeqEvent.FIRST, SeqEvent.RESTART, SeqEvent.LOSS):
            # The first message of a feed cannot prove nothing came before it either.
            coin = topic.split(".", 1)[1].rstrip("|")
            reason = {SeqEvent.FIRST: "feed_start", SeqEvent.RESTART: "ingest_restart"}.get(
                event, "bus_loss"
            )
            self.counters.lost_messages += skipped
            emit = self.log.info if event is SeqEvent.FIRST else self.log.warning
            emit("feed_discontinuity", coin=coin, reason=reason, skipped=skipped)
            taint(self.state, coin, previous, now)
        if isinstance(message, TradeBatch):
            late = apply_trades(self.state, list(message.trades))
            for item in late:
                self.taps.publish(
                    late_topic(item.trade.coin),
                    LateTrade(item.interval, item.window_ms, item.trade),
                )
            if late:
                self.log.warning_limited("late", 5, "late_trades", total=self.state.late_trades)
        elif isinstance(message, Gap):
            self._on_gap(message)
        else:
            raise ProtocolError(f"unexpected message {kind_of(message)} on {topic}")

    def _on_gap(self, gap: Gap) -> None:
        self.counters.gaps += 1
        self.log.warning(
            "gap_marker", coin=gap.coin, from_ms=gap.from_ms, to_ms=gap.to_ms, reason=gap.reason
        )
        emitted = taint(self.state, gap.coin, gap.from_ms, gap.to_ms)
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

    def _on_ingest_status(self, status: StageStatus, now: int) -> None:
        self.ingest_seen_ms = now
        feed = status.feed
        if feed is not None and feed.connected:
            self.ingest_ok_ms = now
        else:
            taint(self.state, None, self.ingest_ok_ms or self.state.joined_ms, now)
        for coin in () if feed is None else feed.delisted:
            if retire_coin(self.state, coin):
                self.log.error("coin_retired", coin=coin, reason="delisted by the venue")

    def _drain_acks(self) -> None:
        while True:
            try:
                frames = self.writer.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if len(frames) != 2 or frames[0] != b"ack":
                    raise ProtocolError("ack must be [b'ack', payload]")
                _, ack = decode_message(frames[1])
                if not isinstance(ack, BarAck):
                    raise ProtocolError(f"expected an ack, got {kind_of(ack)}")
                key = (ack.coin, ack.interval, ack.start_ms)
            except ProtocolError as exc:
                self.counters.malformed += 1
                self.log.warning_limited("bad_ack", 5, "malformed_ack", error=str(exc)[:200])
                continue
            if self.outbox.ack(key):
                self.counters.acks += 1

    def _emit(self, bar: Bar) -> None:
        self.taps.publish(bar_topic(bar.interval, bar.coin), bar)
        envelope = self.taps.next_envelope("writer")
        self.outbox.add((bar.coin, bar.interval, bar.start_ms), encode_message(envelope, bar))
        self.counters.bars += 1
        self.log.debug(
            "bar",
            coin=bar.coin,
            interval=bar.interval,
            start_ms=bar.start_ms,
            trades=bar.trades,
            complete=bar.complete,
        )

    def _heartbeat(self, now: int) -> None:
        if self.ingest_seen_ms and now - self.ingest_seen_ms > INGEST_SILENT_MS:
            taint(self.state, None, self.ingest_seen_ms, now)
            self.log.warning_limited(
                "ingest_silent", 30, "ingest_silent", silent_ms=now - self.ingest_seen_ms
            )
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
        """Give in-flight bars a moment to reach the writer, then close sockets."""
        deadline = self.clock.monotonic() + 1.0
        while self.outbox.size and self.clock.monotonic() < deadline:
            if self.writer.poll(100, zmq.POLLIN):
                self._drain_acks()
        if self.outbox.size:
            self.log.warning("unacked_at_exit", bars=self.outbox.size)
        self.log.info("stopped", bars=self.counters.bars, trades=self.state.applied_trades)
        self.sub.close()
        self.writer.close()
        self.taps.close()
