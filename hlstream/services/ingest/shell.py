"""IO shell of ingest: websocket links to the exchange in, trades and channels out on the bus.

Threads: one `link_io.Link` per websocket connection (subscriptions are sharded at
`ws_subscriptions_per_connection`, within the venue's 10 connections / 1000 subscriptions
per IP). Each link connects, subscribes, pings, detects a stale (zombie) feed and reconnects
with its own backoff and jitter, sharing the 30-connections-a-minute and 1800-messages-a-
minute budgets with the other links. A link reads a frame and every frame already waiting
behind it, parses them and calls `_on_link` in its own thread (no hand-off per frame);
`_on_link` dedupes, tapes and publishes under `self.lock`, which also guards the ZeroMQ
publisher (not thread-safe), the tape writer, the deduper, the replay gap check and the
counters. The main thread heartbeats (status every 0.5 s), fdatasyncs the tape every 50 ms
and prunes it hourly.

The trade tape (common/tape/writer_io.py, `data_dir/tape/{coin}/{day}.csv`) is written BEFORE
anything is published: each handler call appends the admitted trades and gap markers, writes
them (one write per segment), and only then publishes their batches, each stamped with its
byte span on the tape. fdatasync runs off the hot path, every `SYNC_EVERY_S`: a crashed or
killed process loses nothing (the page cache holds the lines), a crashed machine loses at
most that much tape. So a restarted aggregator can replay exactly what it missed, and the
dedupe state is the tape's tail (read back on start): it can never disagree with what was
published. If the venue's replay on resubscribe does not overlap the tape, the gap marker
spans exactly the uncovered time. `covered_ms` (in the heartbeat, and on the last batch of
each handler call) says up to when everything received is taped and published; it stops
moving while a link is down or a replay is still awaited, and the aggregator holds windows
on it.

Startup: the tape is opened (a second ingest on the same data dir is refused) and its torn
tails repaired; coins are checked against meta/spotMeta (unknown coin:
ConfigError with a close-match hint, exit 78) and `coins = "all"` is expanded to every listed
perp with the same helper the other stages use (common/universe.py). A coin delisted while
running is detected by its link (early close after subscribing, then a fresh listing), logged
once at ERROR as `coin_delisted`, and nothing more is published for it.

Bus output (see common/messages.py): `trade.{coin}|` (deduped on (coin, ts_ms, tid)),
`gap.{coin}|`, `status.ingest|`, and when configured `book.{coin}|`, `bbo.{coin}|`,
`fills.{address}|` (not deduped; resubscribed on every reconnect).

Files: the tape in `data_dir/tape`, pruned to `tape_days`; `run_dir/ingest-status.json`
(the heartbeat, written through common/status_io and read by `hlstream status`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import zmq

from hlstream.common.book import Bbo, Book, Fills
from hlstream.common.bus_io import Publisher, curve_keys
from hlstream.common.clock import Clock, SystemClock
from hlstream.common.config import Settings, validate
from hlstream.common.errors import ConfigError, IntegrityError, ProtocolError, TransientError
from hlstream.common.lifecycle_io import StopFlag, StopRequestedError, call_until_stopped
from hlstream.common.log import EventLog
from hlstream.common.messages import (
    Gap,
    TapeSpan,
    Trade,
    TradeBatch,
    bbo_topic,
    book_topic,
    fills_topic,
    gap_topic,
    status_topic,
    trade_topic,
)
from hlstream.common.rest_io import FOREVER, call_with_retry
from hlstream.common.status import FeedStatus, RestTracker, StageStatus, TradeActivity
from hlstream.common.status_io import write_status
from hlstream.common.tape.format import record_day, segment_day, split_by_day
from hlstream.common.tape.readers_io import tail_trades
from hlstream.common.tape.writer_io import TapeWriter, prune, sync_taken
from hlstream.common.universe import check_coins, dex_prefixes, resolve_coins, wants_all
from hlstream.services.ingest.channels import (
    BBO,
    L2BOOK,
    USER_FILLS,
    parse_bbo,
    parse_book,
    parse_fills,
    plan_subscriptions,
    shard,
)
from hlstream.services.ingest.core import (
    Deduper,
    Frame,
    FrameKind,
    ReplayCheck,
    admit_batch,
)
from hlstream.services.ingest.link_io import Event, EventKind, Link, Listing, Shared
from hlstream.services.ingest.replay_io import ReplayServer

SERVICE = "ingest"
STATUS_EVERY_S = 0.5  # heartbeat (it also carries covered_ms when no trades flow)
SEED_TRADES_PER_COIN = 2_000  # dedupe keys read back from the tape's tail per coin
REPLAY_WAIT_S = 3.0  # a coin with no replay after this long never traded: stop waiting
PRUNE_EVERY_S = 3600.0
SUMMARY_EVERY_S = 60.0
SYNC_EVERY_S = 0.05  # tape fdatasync period (off the publishing path)
JOIN_S = 1.0
BEHIND_BYTES = 1 << 20  # unhandled bytes on one link that count as falling behind the venue
MAX_BATCH_TRADES = 1024  # a coin's trades of one handler call go out together, up to this


def open_tape(data_dir: Path, log: EventLog) -> TapeWriter:
    """The tape writer; a second ingest on the same data dir is a configuration error."""
    try:
        return TapeWriter(data_dir, log)
    except IntegrityError as exc:
        raise ConfigError(f"{exc}: another ingest uses data_dir {data_dir}") from None


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
        self.publisher: Publisher | None = None
        self.halt = threading.Event()
        self.lock = threading.Lock()  # links call _on_link concurrently
        self._crashed: int | None = None
        self._link_covered: dict[int, int] = {}
        self.links: list[Link] = []
        self.delisted: set[str] = set()
        self.tape: TapeWriter | None = None
        self._outgoing: list[tuple[str, TradeBatch | Gap]] = []
        # Admitted trades not yet taped, per coin, with the stamps of their first frame: the
        # frames of one handler call were all read before any is published, so each coin's
        # go out as one message (one tape append, one send, one message for the aggregator).
        self._held: dict[str, tuple[list[Trade], int, int]] = {}
        # Committed end per (coin, day) segment, for the replay server's thread (which only
        # looks keys up): set to a segment's pre-commit size when a batch first touches it.
        self.tape_ends: dict[tuple[str, str], int] = {}
        self._covered_ms = 0  # every trade received before this is on the tape and published
        self._replay_since = 0.0
        self._next_prune = 0.0
        self._up: set[int] = set()
        self._live: set[int] = set()  # links not retired (every coin of theirs delisted)
        self._msgs = 0
        self._msgs_at_status = 0
        self._next_status = 0.0
        self._next_summary = time.monotonic() + SUMMARY_EVERY_S
        self._last_status_at = time.monotonic()
        self._connected = False
        self._connected_changed_ms = self.clock.now_ms()  # when `_connected` last changed
        self.rest = RestTracker()  # the meta/spotMeta listing requests

    # ---- lifecycle -------------------------------------------------------------------

    def run(self) -> None:
        """Open the tape, check coins, stream until stopped; always commit on the way out."""
        self.tape = open_tape(self.settings.data_dir, self.log)
        self.publisher = Publisher(
            self.context, self.settings.trades_endpoint, curve=curve_keys(self.settings)
        )
        watched = self.settings.coins + self.settings.book_coins + self.settings.bbo_coins
        listing = Listing(self.settings.info_url, dex_prefixes(watched))
        replay = ReplayServer(
            self.context,
            self.settings.replay_endpoint,
            self.settings.data_dir,
            self.settings.coins,
            lambda: self.tape_ends,
            self.log,
            curve_keys(self.settings),
        )
        replay.start()
        try:
            self._write_heartbeat(self._tick(time.monotonic()))
            if self.settings.validate_coins or wants_all(self.settings.coins):
                self._check_coins(listing)
            self._seed_from_tape()
            self._start_links(listing)
            self._pump()
        except StopRequestedError:
            pass
        finally:
            self._stop_links()
            replay.close()
            with self.lock:  # a link that did not stop in time must not publish from here on
                self.halt.set()
                self._flush()
                self.tape.close()  # commits and fdatasyncs what is left
                heartbeat = self._publish_status()
                self.publisher.close()
            self._write_heartbeat(heartbeat)
            listing.close()
            self.log.info("stopped", signal=self.stop.signal_name, **asdict(self.counters))

    def _idle(self, seconds: float) -> bool:
        """Wait `seconds` while keeping heartbeats going; True if the StopFlag was set."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return False
            self._write_heartbeat(self._tick(now))
            self.stop.wait(min(0.2, deadline - now))
        return True

    def _check_coins(self, listing: Listing) -> None:
        """Expand `all` and check every coin against meta/spotMeta; retry while offline."""

        def fetch() -> tuple[Any, set[str]]:
            try:
                answer = call_until_stopped(self.stop, listing.fetch)
            except ProtocolError as exc:  # a garbled answer: as good as no answer, retry
                self.rest.failed(self.clock.now_ms(), f"malformed listing: {exc}")
                raise TransientError(f"malformed listing: {exc}") from exc
            except TransientError as exc:
                self.rest.failed(self.clock.now_ms(), str(exc))
                raise
            self.rest.succeeded(self.clock.now_ms())
            return answer

        def on_retry(attempt: int, delay_s: float, exc: TransientError) -> None:
            self.log.repeated(
                logging.WARNING,
                "meta_unavailable",
                str(exc),
                attempt=attempt,
                delay_ms=int(delay_s * 1000),
            )

        try:
            meta, names = call_with_retry(
                fetch,
                attempts=FOREVER,
                on_retry=on_retry,
                should_stop=self.stop.is_set,
                base_s=self.settings.backoff_base_seconds,
                cap_s=self.settings.backoff_cap_seconds,
                sleep=self._pause,
            )
        except TransientError:
            if self.stop.is_set():
                return
            raise
        coins = resolve_coins(self.settings, meta)
        if coins != self.settings.coins:
            self.settings = validate(replace(self.settings, coins=coins))
            self.log.info("coins_resolved", coins=len(coins), source="meta")
        if self.settings.validate_coins:
            settings = self.settings
            check_coins(settings.coins + settings.book_coins + settings.bbo_coins, names)
            self.log.info("coins_validated", coins=len(settings.coins))

    def _pause(self, seconds: float) -> None:
        """Sleep for a retry while heartbeats go on."""
        self._idle(seconds)

    def _start_links(self, listing: Listing) -> None:
        settings = self.settings
        subs = plan_subscriptions(
            settings.coins, settings.book_coins, settings.bbo_coins, settings.user_fills
        )
        shards = shard(subs, settings.ws_subscriptions_per_connection)
        shared = Shared(settings, self.log, self.halt, self._on_link, listing)
        self.links = [Link(index, subs, shared) for index, subs in enumerate(shards)]
        self._live = set(range(len(self.links)))
        self.log.info("links_planned", links=len(self.links), subscriptions=len(subs))
        for link in self.links:
            link.start()

    def _stop_links(self) -> None:
        self.halt.set()
        deadline = time.monotonic() + JOIN_S
        for link in self.links:
            link.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            self._up.clear()

    def _pump(self) -> None:
        """The main thread: heartbeat, tape fdatasync and pruning while the links stream."""
        while not self.stop.wait(SYNC_EVERY_S):
            if self._crashed is not None:
                raise LinkCrashError(f"link {self._crashed} crashed")
            assert self.tape is not None
            with self.lock:  # the links wait for it: file IO goes after
                heartbeat = self._tick(time.monotonic())
                fds, dirs = self.tape.take_unsynced()
            self._write_heartbeat(heartbeat)
            try:
                sync_taken(fds, dirs)
            except OSError as exc:
                self.log.error_limited("tape_sync", 10.0, "tape_sync_failed", error=str(exc))

    def _on_link(self, link: int, events: list[Event], covered_ms: int | None) -> None:
        """A link's frames and news, in order, in the link's thread: tape, then publish."""
        with self.lock:
            if self.publisher is None or self.publisher.socket.closed:
                return  # stopped: what the link still read is replayed by the venue next time
            for event in events:
                self._on_event(event)
            if covered_ms is not None:
                self._link_covered[link] = covered_ms
            self._flush()

    # ---- link events -----------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.FRAME:
            assert event.frame is not None
            self._on_frame(event.frame, event.recv_ms, event.recv_us)
        elif kind is EventKind.CONNECTED:
            self._up.add(event.link)
            self._replay_since = time.monotonic()
            self.replay.on_connect(c for c in event.coins if c not in self.delisted)
        elif kind is EventKind.DISCONNECTED:
            self._up.discard(event.link)
            if event.text != "stop":
                self.counters.reconnects += 1
        elif kind is EventKind.MALFORMED:
            self.counters.malformed += 1
            self.log.warning_limited(
                "malformed",
                10.0,
                "ws_malformed",
                link=event.link,
                error=event.text,
                malformed=self.counters.malformed,
            )
        elif kind is EventKind.ERROR:
            self.counters.ws_errors += 1
        elif kind is EventKind.DELISTED:
            for coin in event.coins:
                if coin not in self.delisted:
                    self.delisted.add(coin)
                    self.log.error(
                        "coin_delisted",
                        coin=coin,
                        link=event.link,
                        action="unsubscribed; nothing more is published for it",
                    )
        elif kind is EventKind.RETIRED:
            self._live.discard(event.link)
        elif kind is EventKind.HEALTHY:
            self.log.debug("ws_healthy", link=event.link)
        elif kind is EventKind.CRASHED:
            self._crashed = event.link  # the main thread raises LinkCrashError

    def _on_frame(self, frame: Frame, recv_ms: int, recv_us: int) -> None:
        self._msgs += 1
        if frame.kind is FrameKind.TRADES:
            if frame.rejected:
                self.counters.rejected += frame.rejected
                self.log.warning_limited(
                    "rejected", 10.0, "trades_rejected", rejected=self.counters.rejected
                )
            self._on_trades(frame, recv_ms, recv_us)
        elif frame.kind is FrameKind.DATA:
            self._on_channel(frame, recv_ms)
        elif frame.kind is FrameKind.UNKNOWN:
            self.log.warning_limited(
                "unknown:" + frame.channel[:40], 60.0, "ws_unknown_channel", channel=frame.channel
            )

    def _on_channel(self, frame: Frame, recv_ms: int) -> None:
        """Publish one optional-channel frame (l2Book, bbo, userFills) as documented."""
        assert self.publisher is not None
        try:
            message: Book | Bbo | Fills
            if frame.channel == L2BOOK:
                message = parse_book(frame.data, recv_ms)
                topic, coin = book_topic(message.coin), message.coin
            elif frame.channel == BBO:
                message = parse_bbo(frame.data, recv_ms)
                topic, coin = bbo_topic(message.coin), message.coin
            elif frame.channel == USER_FILLS:
                message = parse_fills(frame.data, recv_ms)
                topic, coin = fills_topic(message.user), None
            else:
                self.log.warning_limited(
                    "channel:" + frame.channel, 60.0, "ws_unexpected_channel", channel=frame.channel
                )
                return
        except ProtocolError as exc:
            self.counters.malformed += 1
            self.log.warning_limited(
                "channel_malformed", 10.0, "ws_malformed", channel=frame.channel, error=str(exc)
            )
            return
        if coin in self.delisted:
            return
        self.publisher.publish(topic, message)
        self.counters.channel_msgs += 1

    def _on_trades(self, frame: Frame, now_ms: int, recv_us: int) -> None:
        by_coin: dict[str, list[Trade]] = {}
        if frame.coin:  # the venue's frames are one coin's (one subscription each)
            if frame.coin not in self.delisted:
                by_coin[frame.coin] = list(frame.trades)
        else:
            for trade in frame.trades:
                if trade.coin not in self.delisted:
                    by_coin.setdefault(trade.coin, []).append(trade)
        assert self.publisher is not None
        for coin, batch in by_coin.items():
            admission = admit_batch(self.deduper, self.replay, coin, batch)
            fresh, duplicates, too_old = admission.fresh, admission.duplicates, admission.too_old
            if admission.gap is not None:
                self._publish_gap(admission.gap)
            if fresh:
                self._hold(coin, fresh, now_ms, recv_us)
            self.counters.trades += len(fresh)
            self.counters.duplicates += duplicates
            if too_old:
                self.counters.too_old += too_old
                self.log.warning_limited(
                    "too_old:" + coin, 10.0, "trades_too_old", coin=coin, too_old=too_old
                )

    def _publish_gap(self, gap: Gap) -> None:
        self.counters.gaps += 1
        self.log.warning(
            "gap", coin=gap.coin, from_ms=gap.from_ms, to_ms=gap.to_ms, reason=gap.reason
        )
        assert self.tape is not None
        self._tape_held(gap.coin)  # the coin's earlier trades go on the tape before the gap
        for piece in split_by_day(gap):
            assert isinstance(piece, Gap)
            key = (piece.coin, record_day(piece))
            span = self.tape.append([piece])[key]
            self.tape_ends.setdefault(key, span[0])
            self._outgoing.append(
                (
                    gap_topic(piece.coin),
                    msgspec.structs.replace(piece, tape=TapeSpan(record_day(piece), *span)),
                )
            )

    # ---- the tape: written before anything is published ----------------------------------

    def _hold(self, coin: str, fresh: list[Trade], now_ms: int, recv_us: int) -> None:
        """Keep a frame's admitted trades with the coin's others of this handler call."""
        held = self._held.get(coin)
        if held is None:
            held = self._held[coin] = (fresh, now_ms, recv_us)
        else:
            held[0].extend(fresh)
        if len(held[0]) >= MAX_BATCH_TRADES:
            self._tape_held(coin)

    def _tape_held(self, coin: str | None = None) -> None:
        """Tape the held trades of `coin` (None: of every coin) and queue their messages."""
        for each in list(self._held) if coin is None else [coin]:
            held = self._held.pop(each, None)
            if held is not None:
                self._tape_trades(each, *held)

    def _tape_trades(self, coin: str, fresh: list[Trade], now_ms: int, recv_us: int) -> None:
        """Append one coin's admitted trades to the tape; queue their batch(es) for the bus."""
        assert self.tape is not None
        for day, trades, start, end in self.tape.append_trades(coin, fresh):
            self.tape_ends.setdefault((coin, day), start)
            batch = TradeBatch(coin, now_ms, tuple(trades), TapeSpan(day, start, end), recv_us)
            self._outgoing.append((trade_topic(coin), batch))

    def _flush(self) -> None:
        """Write the tape (one write per segment), then publish what it holds; the last batch
        carries how far ingest now vouches for the feed (`covered_ms`)."""
        if self.tape is None:
            return
        self._tape_held()
        if not self._outgoing:
            return
        try:
            written = self.tape.commit(sync=False)  # fdatasync: _pump, every SYNC_EVERY_S
        except OSError as exc:  # disk full: nothing is published; retried on the next call
            self.log.error_limited(
                "tape_write", 10.0, "tape_write_failed", error=str(exc), pending=len(self._outgoing)
            )
            return
        for position in written:
            self.tape_ends[(position.coin, position.day)] = position.offset
        assert self.publisher is not None
        outgoing, self._outgoing = self._outgoing, []
        topic, last = outgoing[-1]
        if isinstance(last, TradeBatch):
            covered = self._covered(self.clock.now_ms(), time.monotonic())
            outgoing[-1] = (topic, msgspec.structs.replace(last, covered_ms=covered))
        for topic, message in outgoing:
            self.publisher.publish(topic, message)

    def _seed_from_tape(self) -> None:
        """Dedupe state is the tape's tail: what was published is exactly what is known."""
        assert self.tape is not None
        # The replay server reads a segment only up to its entry here: an existing segment
        # without one would be read whole while a batch is being appended to it, and a tap
        # catching up would get that batch's first lines both from the replay and live.
        for position in self.tape.recover(self.settings.coins):
            self.tape_ends[(position.coin, position.day)] = position.offset
        seeded = 0
        for coin in self.settings.coins:
            tail = tail_trades(self.settings.data_dir, coin, SEED_TRADES_PER_COIN)
            self.deduper.admit(sorted(tail, key=lambda trade: trade.ts_ms))
            seeded += len(tail)
        self.log.info("dedupe_seeded_from_tape", trades=seeded, coins=len(self.settings.coins))

    def _covered(self, now_ms: int, now_s: float) -> int:
        """Advance the coverage mark while every link is up and its replay is in: to the
        oldest of the links' own marks (each: all it received before is handled)."""
        live = self._live
        all_up = bool(live) and live <= self._up
        if all_up and self.replay.any_pending() and now_s - self._replay_since > REPLAY_WAIT_S:
            self.replay.settle()
        if all_up and not self.replay.any_pending() and not self._outgoing and not self._held:
            link_covered = self._link_covered
            mark = min([link_covered.get(i, 0) for i in live])
            self._covered_ms = max(self._covered_ms, min(mark, now_ms))
        return self._covered_ms

    # ---- periodic work -------------------------------------------------------------------

    def _tick(self, now: float) -> StageStatus | None:
        """Periodic work under the lock; returns a heartbeat for the caller to write to disk."""
        heartbeat = None
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            heartbeat = self._publish_status()
        if now >= self._next_prune and self.tape is not None:
            self._next_prune = now + PRUNE_EVERY_S
            self._prune()
        if now >= self._next_summary:
            self._next_summary = now + SUMMARY_EVERY_S
            self.log.info(
                "ingest_summary",
                links_up=len(self._up),
                keys=self.deduper.key_count(),
                **asdict(self.counters),
            )
        return heartbeat

    def _write_heartbeat(self, heartbeat: StageStatus | None) -> None:
        """ingest-status.json, written outside the lock the links publish under."""
        if heartbeat is not None:
            write_status(self.settings.run_dir, heartbeat)

    def status(self) -> StageStatus:
        """The heartbeat (also written to ingest-status.json)."""
        now = time.monotonic()
        elapsed = max(now - self._last_status_at, 1e-3)
        rate = (self._msgs - self._msgs_at_status) / elapsed
        self._last_status_at = now
        self._msgs_at_status = self._msgs
        now_ms = self.clock.now_ms()
        connected = bool(self._up) and len(self._up) == len(self._live)
        if connected != self._connected:
            self._connected, self._connected_changed_ms = connected, now_ms
        feed = FeedStatus(
            connected=connected,
            links=len(self.links),
            links_up=len(self._up),
            delisted=tuple(sorted(self.delisted)),
            msgs_per_s=round(rate, 2),
            last_trade_ms=self.deduper.newest_by_coin(),
            covered_ms=self._covered(now_ms, now),
            backlog_bytes=self._backlog(),
            connected_since_ms=self._connected_changed_ms if connected else None,
            disconnected_since_ms=None if connected else self._connected_changed_ms,
            activity={
                coin: TradeActivity(times, span_ms)
                for coin, (times, span_ms) in self.deduper.activity_by_coin().items()
            },
        )
        session = "" if self.publisher is None else self.publisher.session
        return StageStatus(
            SERVICE,
            now_ms,
            os.getpid(),
            session,
            asdict(self.counters),
            feed=feed,
            rest=self.rest.status(),
        )

    def _backlog(self) -> int:
        """The largest unhandled backlog of any link; over BEHIND_BYTES it is counted and
        logged: the venue drops a consumer that stays behind."""
        backlog = max((link.backlog_bytes() for link in self.links), default=0)
        if backlog > BEHIND_BYTES:
            self.counters.behind += 1
            self.log.warning_limited(
                "behind",
                10.0,
                "ingest_behind",
                backlog_bytes=backlog,
                behind=self.counters.behind,
                hint="ingest cannot keep up with the feed: fewer coins, or a faster host",
            )
        return backlog

    def _publish_status(self) -> StageStatus:
        status = self.status()
        if self.publisher is not None:
            self.publisher.publish(status_topic(SERVICE), status)
        return status

    def _prune(self) -> None:
        today = segment_day(self.clock.now_ms())
        try:
            removed = prune(self.settings.data_dir, self.settings.tape_days, today)
        except OSError as exc:
            self.log.warning("tape_prune_failed", error=str(exc))
            return
        if removed:
            self.log.info("tape_pruned", segments=len(removed), keep_days=self.settings.tape_days)
