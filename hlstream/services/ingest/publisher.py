"""Ingest's tape-first publisher: admitted trades and gap markers go on the tape, then the bus.

- Nothing is published before the tape write that holds it returned; each published batch or
  gap carries its byte span on the tape (`TapeSpan`), so a restarted aggregator replays exactly
  what it missed. fdatasync runs off this path (the shell's main thread): a killed process
  loses nothing, a crashed machine at most one sync period of tape.
- One handler call's admitted trades go out as one message per coin (up to MAX_BATCH_TRADES);
  a gap marker goes out after the coin's trades held before it, before those after it.
- `ends` maps each (coin, day) segment to its committed end for the replay thread; a segment
  first touched by a batch enters at its size before that batch, so a tap catching up never
  gets the batch both from the replay and live.
- Closed days are compacted to Parquet by `hlstream compact` in a niced child process the
  hourly prune starts, one at a time: crash-safe, and never holding this process's GIL or lock.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import msgspec

from hlstream.common.bus_io import Publisher
from hlstream.common.errors import ConfigError, IntegrityError
from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, TapeSpan, Trade, TradeBatch, gap_topic, trade_topic
from hlstream.common.tape.compact_io import has_work
from hlstream.common.tape.format import record_day, split_by_day
from hlstream.common.tape.writer_io import TapeWriter, prune

MAX_BATCH_TRADES = 1024  # a coin's trades of one handler call go out together, up to this
TAPE_WRITE_LOG_EVERY_S = 10.0
COMPACT_COMMAND = ["nice", "-n", "10", sys.executable, "-m", "hlstream.cli", "compact"]


def open_tape(data_dir: Path, log: EventLog) -> TapeWriter:
    """The tape writer; a second ingest on the same data dir is a configuration error."""
    try:
        return TapeWriter(data_dir, log)
    except IntegrityError as exc:
        raise ConfigError(f"{exc}: another ingest uses data_dir {data_dir}") from None


class Held(NamedTuple):
    """A coin's admitted trades not yet taped, with the receive stamps of their first frame."""

    trades: list[Trade]
    recv_ms: int
    recv_us: int


class TapeFirst:
    """Tapes, then publishes; not thread-safe (the shell calls it under its lock)."""

    def __init__(self, tape: TapeWriter, bus: Publisher, log: EventLog) -> None:
        self.tape = tape
        self.bus = bus
        self.log = log
        self.ends: dict[tuple[str, str], int] = {}
        self._held: dict[str, Held] = {}
        self._outgoing: list[tuple[str, TradeBatch | Gap]] = []
        self.compactor: subprocess.Popen[bytes] | None = None

    def idle(self) -> bool:
        """Nothing admitted is waiting for the tape or the bus."""
        return not self._held and not self._outgoing

    def recover(self, coins: Iterable[str]) -> None:
        """Repair the coins' newest segments and bound the replay of each to its end: one read
        whole while a batch is appended would serve that batch's first lines twice."""
        for position in self.tape.recover(coins):
            self.ends[(position.coin, position.day)] = position.offset

    def hold(self, coin: str, fresh: list[Trade], recv_ms: int, recv_us: int) -> None:
        """Keep a frame's admitted trades with the coin's others of this handler call."""
        held = self._held.get(coin)
        if held is None:
            held = self._held[coin] = Held(fresh, recv_ms, recv_us)
        else:
            held.trades.extend(fresh)
        if len(held.trades) >= MAX_BATCH_TRADES:
            self._tape_held(coin)

    def gap(self, gap: Gap) -> None:
        """Tape a gap marker (one piece per day it spans) after the coin's held trades."""
        self._tape_held(gap.coin)
        for piece in split_by_day(gap):
            assert isinstance(piece, Gap)
            key = (piece.coin, record_day(piece))
            start, end = self.tape.append([piece])[key]
            self.ends.setdefault(key, start)
            span = TapeSpan(key[1], start, end)
            self._outgoing.append(
                (gap_topic(piece.coin), msgspec.structs.replace(piece, tape=span))
            )

    def flush(self, covered_ms: Callable[[], int]) -> None:
        """Write the tape (one write per segment), then publish what it holds; the last batch
        carries `covered_ms()`, asked once nothing is left to tape."""
        self._tape_held()
        if not self._outgoing:
            return
        try:
            written = self.tape.commit(sync=False)
        except OSError as exc:  # disk full: nothing is published; retried on the next call
            self.log.error_limited(
                "tape_write",
                TAPE_WRITE_LOG_EVERY_S,
                "tape_write_failed",
                error=str(exc),
                pending=len(self._outgoing),
            )
            return
        for position in written:
            self.ends[(position.coin, position.day)] = position.offset
        outgoing, self._outgoing = self._outgoing, []
        topic, last = outgoing[-1]
        if isinstance(last, TradeBatch):
            outgoing[-1] = (topic, msgspec.structs.replace(last, covered_ms=covered_ms()))
        for topic, message in outgoing:
            self.bus.publish(topic, message)

    def prune(self, keep_days: int, today: str) -> None:
        """Remove the tape's segments older than `keep_days` before `today`; then start
        compacting the closed days, unless the last compaction is still running."""
        try:
            removed = prune(self.tape.data_dir, keep_days, today)
        except OSError as exc:
            self.log.warning("tape_prune_failed", error=str(exc))
            return
        if removed:
            self.log.info("tape_pruned", segments=len(removed), keep_days=keep_days)
        if self.compactor is not None and self.compactor.poll() is None:
            return  # the last compaction is still running
        command = [*COMPACT_COMMAND, "--data-dir", str(self.tape.data_dir), "--today", today]
        try:
            if has_work(self.tape.data_dir, today):
                self.compactor = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
                )
        except OSError as exc:
            self.log.warning("tape_compact_failed", error=str(exc))

    def _tape_held(self, coin: str | None = None) -> None:
        """Append the held trades of `coin` (None: of every coin); queue their batches."""
        for each in list(self._held) if coin is None else [coin]:
            held = self._held.pop(each, None)
            if held is None:
                continue
            # Held trades are parse_frame's (`hold`): their decimals and users are checked.
            taped = self.tape.append_trades(each, held.trades, checked=True)
            for day, trades, start, end in taped:
                self.ends.setdefault((each, day), start)
                span = TapeSpan(day, start, end)
                batch = TradeBatch(each, held.recv_ms, tuple(trades), span, held.recv_us)
                self._outgoing.append((trade_topic(each), batch))
