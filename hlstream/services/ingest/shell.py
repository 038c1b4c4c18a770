"""IO shell of ingest: websocket links in; trades, gaps, channels and status out on the bus.

Each `link_io.Link` thread hands the frames it read, in order, to `_on_link`, which dedupes
them (core/), tapes then publishes them (publisher.py) under `self.lock`: it guards the ZeroMQ
socket (not thread-safe), the tape, the deduper, the coverage and the counters. The main
thread heartbeats, fdatasyncs the tape every SYNC_EVERY_S and prunes it to `tape_days`.
The dedupe state is the tape's tail, read back on start: it cannot disagree with what was
published. Nothing more is published for a coin a link finds delisted.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from hlstream.common.bus_io import Publisher, curve_keys
from hlstream.common.clock import Clock, SystemClock
from hlstream.common.config import Settings
from hlstream.common.errors import ProtocolError
from hlstream.common.lifecycle_io import StopFlag, StopRequestedError
from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, status_topic
from hlstream.common.status import FeedStatus, RestTracker, StageStatus
from hlstream.common.status_io import write_status
from hlstream.common.tape.format import segment_day
from hlstream.common.tape.readers_io import tail_trades
from hlstream.common.tape.writer_io import sync_taken
from hlstream.common.universe import dex_prefixes, wants_all
from hlstream.services.ingest.channels import channel_message, plan_subscriptions, shard
from hlstream.services.ingest.core.coverage import Coverage
from hlstream.services.ingest.core.dedupe import Deduper, ReplayCheck, admit_batch, by_coin
from hlstream.services.ingest.core.liveness import silence_gaps
from hlstream.services.ingest.core.parse import Frame, FrameKind
from hlstream.services.ingest.events import Event, EventKind
from hlstream.services.ingest.link_io import Link, Shared
from hlstream.services.ingest.listing_io import Listing
from hlstream.services.ingest.publisher import TapeFirst, open_tape
from hlstream.services.ingest.replay_io import ReplayServer

SERVICE = "ingest"
STATUS_EVERY_S = 0.5  # heartbeat (it also carries covered_ms when no trades flow)
SEED_TRADES_PER_COIN = 2_000  # dedupe keys read back from the tape's tail per coin
PRUNE_EVERY_S = 3600.0
SUMMARY_EVERY_S = 60.0
SYNC_EVERY_S = 0.05  # tape fdatasync period (off the publishing path)
IDLE_STEP_S = 0.2  # heartbeats go on while waiting for a retry
JOIN_S = 1.0
LOG_EVERY_S = 10.0  # a repeated warning (rejected, too old, malformed, behind) at most this often
RARE_LOG_EVERY_S = 60.0  # a repeated note on an unknown channel
BEHIND_BYTES = 1 << 20  # unhandled bytes on one link that count as falling behind the venue


class LinkCrashError(RuntimeError):
    """A link thread died of a bug; the process must exit non-zero."""


@dataclass
class Counters:
    reconnects: int = 0
    trades: int = 0
    duplicates: int = 0
    too_old: int = 0
    malformed: int = 0
    rejected: int = 0
    gaps: int = 0
    ws_errors: int = 0
    channel_msgs: int = 0
    behind: int = 0  # heartbeats that found a link's unhandled backlog over BEHIND_BYTES


class Ingest:
    """The ingest process; `run()` returns when the StopFlag is set."""

    def __init__(
        self,
        settings: Settings,
        stop: StopFlag,
        log: EventLog,
        context: zmq.Context[Any],
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.log = log
        self.context = context
        self.clock: Clock = clock or SystemClock()
        self.deduper = Deduper()
        self.replay = ReplayCheck()
        self.counters = Counters()
        self.rest = RestTracker()  # the meta/spotMeta listing requests
        self.out: TapeFirst | None = None  # set by run(): the tape and the bus
        self.halt = threading.Event()
        self.lock = threading.Lock()  # links call _on_link concurrently
        self.links: list[Link] = []
        self.delisted: set[str] = set()
        self._link_coins: dict[int, tuple[str, ...]] = {}  # trade coins of each link
        self.coverage = Coverage(self.replay, self.clock.now_ms())
        self._crashed: int | None = None
        self._msgs = self._msgs_at_status = 0
        now = self.clock.monotonic()
        self._next_status = self._next_prune = 0.0
        self._next_summary = now + SUMMARY_EVERY_S
        self._last_status_at = now

    def run(self) -> None:
        """Open the tape, check coins, stream until stopped; always commit on the way out."""
        settings = self.settings
        keys = curve_keys(settings)
        out = self.out = TapeFirst(
            open_tape(settings.data_dir, self.log),
            Publisher(self.context, settings.trades_endpoint, curve=keys),
            self.log,
        )
        watched = dex_prefixes(settings.coins + settings.book_coins + settings.bbo_coins)
        listing = Listing(settings.info_url, watched, self.rest)
        where = (settings.replay_endpoint, settings.data_dir, settings.coins)
        replay = ReplayServer(self.context, *where, lambda: out.ends, self.log, keys)
        replay.start()
        try:
            self._write_heartbeat(self._tick(self.clock.monotonic()))
            if settings.validate_coins or wants_all(settings.coins):
                self.settings = listing.check(settings, self.stop, self.clock, self.log, self._idle)
                replay.coins = self.settings.coins  # `all` expanded
            self._seed_from_tape(out)
            self._start_links(listing)
            self._pump(out)
        except StopRequestedError:
            pass
        finally:
            self._stop_links()
            replay.close()
            with self.lock:  # a link that did not stop in time must not publish from here on
                self.halt.set()
                out.flush(self._covered_now)
                out.tape.close()  # commits and fdatasyncs what is left
                heartbeat = self._publish_status()
                out.bus.close()
            self._write_heartbeat(heartbeat)
            listing.close()
            self.log.info("stopped", signal=self.stop.signal_name, **asdict(self.counters))

    def _idle(self, seconds: float) -> None:
        """Wait `seconds` (or until the StopFlag is set) while heartbeats go on."""
        deadline = self.clock.monotonic() + seconds
        while not self.stop.is_set():
            now = self.clock.monotonic()
            if now >= deadline:
                return
            self._write_heartbeat(self._tick(now))
            self.stop.wait(min(IDLE_STEP_S, deadline - now))

    def _seed_from_tape(self, out: TapeFirst) -> None:
        """Dedupe state is the tape's tail: what was published is exactly what is known."""
        out.recover(self.settings.coins)
        seeded = 0
        for coin in self.settings.coins:
            tail = tail_trades(self.settings.data_dir, coin, SEED_TRADES_PER_COIN)
            self.deduper.admit(sorted(tail, key=lambda trade: trade.ts_ms))
            seeded += len(tail)
        self.log.info("dedupe_seeded_from_tape", trades=seeded, coins=len(self.settings.coins))

    def _start_links(self, listing: Listing) -> None:
        settings = self.settings
        subs = plan_subscriptions(
            settings.coins, settings.book_coins, settings.bbo_coins, settings.user_fills
        )
        shards = shard(subs, settings.ws_subscriptions_per_connection)
        shared = Shared(settings, self.log, self.halt, self._on_link, listing)
        self.links = [Link(index, subs, shared) for index, subs in enumerate(shards)]
        self.coverage.live = set(range(len(self.links)))
        self.log.info("links_planned", links=len(self.links), subscriptions=len(subs))
        for link in self.links:
            link.thread.start()

    def _stop_links(self) -> None:
        self.halt.set()
        deadline = self.clock.monotonic() + JOIN_S
        for link in self.links:
            link.thread.join(max(0.0, deadline - self.clock.monotonic()))
        with self.lock:
            self.coverage.up.clear()

    def _pump(self, out: TapeFirst) -> None:
        """The main thread: heartbeat, tape fdatasync and pruning while the links stream."""
        while not self.stop.wait(SYNC_EVERY_S):
            if self._crashed is not None:
                raise LinkCrashError(f"link {self._crashed} crashed")
            with self.lock:  # the links wait for it: file IO goes after
                heartbeat = self._tick(self.clock.monotonic())
                fds, dirs = out.tape.take_unsynced()
            self._write_heartbeat(heartbeat)
            try:
                sync_taken(fds, dirs)
            except OSError as exc:
                self.log.error_limited("tape_sync", LOG_EVERY_S, "tape_sync_failed", error=str(exc))

    def _on_link(self, link: int, events: list[Event], covered_ms: int | None) -> None:
        """A link's frames and news, in order: dedupe, tape, then publish."""
        with self.lock:
            out = self.out
            if out is None or out.bus.socket.closed:
                return  # stopped: what the link still read is replayed by the venue next time
            for event in events:
                self._on_event(event, out)
            if covered_ms is not None:
                self.coverage.on_mark(link, covered_ms)
            out.flush(self._covered_now)

    def _on_event(self, event: Event, out: TapeFirst) -> None:
        kind = event.kind
        if kind is EventKind.FRAME:
            assert event.frame is not None
            self._on_frame(event.frame, event.recv_ms, event.recv_us, out)
        elif kind is EventKind.CONNECTED:
            self.coverage.on_connected(event.link, self.clock.monotonic())
            self.replay.on_connect(c for c in event.coins if c not in self.delisted)
            self._link_coins[event.link] = event.coins
        elif kind is EventKind.DISCONNECTED:
            self.coverage.up.discard(event.link)
            if event.text != "stop":
                self.counters.reconnects += 1
            if event.recv_ms:
                coins = [c for c in self._link_coins.get(event.link, ()) if c not in self.delisted]
                for gap in silence_gaps(coins, event.recv_ms, self.clock.now_ms()):
                    self._publish_gap(gap, out)
        elif kind is EventKind.MALFORMED:
            self._malformed("malformed", event.text, link=event.link)
        elif kind is EventKind.ERROR:
            self.counters.ws_errors += 1
        elif kind is EventKind.DELISTED:
            for coin in [c for c in event.coins if c not in self.delisted]:
                self.delisted.add(coin)
                action = "unsubscribed; nothing more is published for it"
                self.log.error("coin_delisted", coin=coin, link=event.link, action=action)
        elif kind is EventKind.RETIRED:
            self.coverage.live.discard(event.link)
        elif kind is EventKind.CRASHED:
            self._crashed = event.link  # the main thread raises LinkCrashError

    def _on_frame(self, frame: Frame, recv_ms: int, recv_us: int, out: TapeFirst) -> None:
        self._msgs += 1
        if frame.kind is FrameKind.TRADES:
            if frame.rejected:
                self.counters.rejected += frame.rejected
                self.log.warning_limited(
                    "rejected", LOG_EVERY_S, "trades_rejected", rejected=self.counters.rejected
                )
            self._on_trades(frame, recv_ms, recv_us, out)
        elif frame.kind is FrameKind.DATA:
            self._on_channel(frame, recv_ms, out)
        elif frame.kind is FrameKind.UNKNOWN:
            self.log.warning_limited(
                "unknown:" + frame.channel[:40],
                RARE_LOG_EVERY_S,
                "ws_unknown_channel",
                channel=frame.channel,
            )

    def _on_channel(self, frame: Frame, recv_ms: int, out: TapeFirst) -> None:
        """Publish one optional-channel frame (l2Book, bbo, userFills) as documented."""
        try:
            parsed = channel_message(frame.channel, frame.data, recv_ms)
        except ProtocolError as exc:
            self._malformed("channel_malformed", str(exc), channel=frame.channel)
            return
        if parsed.coin not in self.delisted:
            out.bus.publish(parsed.topic, parsed.message)
            self.counters.channel_msgs += 1

    def _on_trades(self, frame: Frame, recv_ms: int, recv_us: int, out: TapeFirst) -> None:
        for coin, batch in by_coin(frame.trades, frame.coin, self.delisted).items():
            fresh, duplicates, too_old, gap = admit_batch(self.deduper, self.replay, coin, batch)
            if gap is not None:
                self._publish_gap(gap, out)
            if fresh:
                out.hold(coin, fresh, recv_ms, recv_us)
            self.counters.trades += len(fresh)
            self.counters.duplicates += duplicates
            if too_old:
                self.counters.too_old += too_old
                self.log.warning_limited(
                    "too_old:" + coin, LOG_EVERY_S, "trades_too_old", coin=coin, too_old=too_old
                )

    def _malformed(self, key: str, error: str, **where: object) -> None:
        self.counters.malformed += 1
        fields = {"error": error, "malformed": self.counters.malformed, **where}
        self.log.warning_limited(key, LOG_EVERY_S, "ws_malformed", burst=1, **fields)

    def _publish_gap(self, gap: Gap, out: TapeFirst) -> None:
        self.counters.gaps += 1
        self.log.warning(
            "gap", coin=gap.coin, from_ms=gap.from_ms, to_ms=gap.to_ms, reason=gap.reason
        )
        out.gap(gap)

    def _covered_now(self) -> int:
        idle = self.out is None or self.out.idle()
        return self.coverage.advance(self.clock.now_ms(), self.clock.monotonic(), idle)

    def _tick(self, now: float) -> StageStatus | None:
        """Periodic work under the lock; returns a heartbeat for the caller to write to disk."""
        heartbeat = None
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            heartbeat = self._publish_status()
        if now >= self._next_prune and self.out is not None:
            self._next_prune = now + PRUNE_EVERY_S
            self.out.prune(self.settings.tape_days, segment_day(self.clock.now_ms()))
        if now >= self._next_summary:
            self._next_summary = now + SUMMARY_EVERY_S
            counters = asdict(self.counters)
            up, keys = len(self.coverage.up), self.deduper.key_count()
            self.log.info("ingest_summary", links_up=up, keys=keys, **counters)
        return heartbeat

    def _write_heartbeat(self, heartbeat: StageStatus | None) -> None:
        if heartbeat is not None:  # ingest-status.json, outside the lock the links publish under
            write_status(self.settings.run_dir, heartbeat)

    def _publish_status(self) -> StageStatus:
        status = self.status()
        if self.out is not None:
            self.out.bus.publish(status_topic(SERVICE), status)
        return status

    def status(self) -> StageStatus:
        """The heartbeat (also written to ingest-status.json)."""
        now = self.clock.monotonic()
        rate = (self._msgs - self._msgs_at_status) / max(now - self._last_status_at, 1e-3)
        self._last_status_at, self._msgs_at_status = now, self._msgs
        now_ms = self.clock.now_ms()
        connected = self.coverage.is_connected(now_ms)
        since_ms = self.coverage.changed_ms
        feed = FeedStatus(
            connected=connected,
            links=len(self.links),
            links_up=len(self.coverage.up),
            delisted=tuple(sorted(self.delisted)),
            msgs_per_s=round(rate, 2),
            last_trade_ms=self.deduper.newest_by_coin(),
            covered_ms=self._covered_now(),
            backlog_bytes=self._backlog(),
            connected_since_ms=since_ms if connected else None,
            disconnected_since_ms=None if connected else since_ms,
            activity=self.deduper.activity_by_coin(),
        )
        session = "" if self.out is None else self.out.bus.session
        counters = asdict(self.counters)
        return StageStatus(
            SERVICE, now_ms, os.getpid(), session, counters, feed=feed, rest=self.rest.status()
        )

    def _backlog(self) -> int:
        """The largest unhandled backlog of any link; over BEHIND_BYTES it is counted and
        logged: the venue drops a consumer that stays behind."""
        backlog = max((link.backlog_bytes() for link in self.links), default=0)
        if backlog > BEHIND_BYTES:
            self.counters.behind += 1
            self.log.warning_limited(
                "behind",
                LOG_EVERY_S,
                "ingest_behind",
                backlog_bytes=backlog,
                behind=self.counters.behind,
                hint="ingest cannot keep up with the feed: fewer coins, or a faster host",
            )
        return backlog
