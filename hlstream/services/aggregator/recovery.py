"""How the aggregator resumes: load the checkpoint, then replay the trade tape after its
positions. Without one (first start, new coin) the tape is replayed from the earliest open
window, and the last close and the coverage start are taken from the tape."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from hlstream.common.config import Settings
from hlstream.common.errors import IntegrityError, ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.readers_io import coverage_start_ms, last_trade_before
from hlstream.services.aggregator.checkpoint import Checkpoint, decode_checkpoint
from hlstream.services.aggregator.core import AggState, new_state, seed_trades, taint
from hlstream.services.aggregator.tape_feed import TapeFeed

CHECKPOINT_FILE = "aggregator-checkpoint.msgpack"
REPLAY_CHUNK = 5_000  # trades applied per call while replaying


def restore(settings: Settings, log: EventLog, now_ms: int) -> Checkpoint:
    """The checkpoint (covered_ms at most `now_ms`), or a fresh state joined at `now_ms` with
    no tape read and nothing pending (nothing open ends before now: held from there)."""
    grace_ms = int(settings.grace_seconds * 1000)
    state = new_state(settings.coins, settings.interval_ms, grace_ms, now_ms)
    fresh = Checkpoint(state, {}, [], now_ms)
    path = settings.run_dir / CHECKPOINT_FILE
    try:
        checkpoint = decode_checkpoint(path.read_bytes())
    except FileNotFoundError:
        log.info("checkpoint_absent", path=str(path))
        return fresh
    except ProtocolError as exc:
        log.error("checkpoint_unreadable", path=str(path), error=str(exc))
        return fresh
    state = checkpoint.state
    if set(state.series) != set(fresh.state.series) or state.grace_ms != grace_ms:
        log.warning("checkpoint_ignored", reason="coins, intervals or grace changed")
        return fresh
    log.info(
        "checkpoint_loaded",
        series=len(state.series),
        pending_bars=len(checkpoint.pending),
        covered_ms=checkpoint.covered_ms,
    )
    return msgspec.structs.replace(checkpoint, covered_ms=min(now_ms, checkpoint.covered_ms))


def replay(
    state: AggState,
    tape: TapeFeed,
    settings: Settings,
    log: EventLog,
    now_ms: int,
    apply: Callable[[list[Trade]], None],
    on_gap: Callable[[Gap], None],
) -> set[str]:
    """Apply everything on the tape after the restored positions; return the coins whose
    tape was empty (the tape covers them from their first record, see the shell)."""
    untaped: set[str] = set()
    for coin, series in list(state.by_coin.items()):
        from_ms = min(item.closed_through for item in series)
        first_sight = not tape.positions(coin)
        if first_sight and not _seed_coin(state, settings, coin, from_ms, now_ms):
            untaped.add(coin)
        batch: list[Trade] = []
        try:
            for record in tape.replay(coin, from_ms):
                if isinstance(record, Gap):
                    apply(batch)
                    batch = []
                    on_gap(record)
                elif first_sight and record.ts_ms < from_ms:
                    seed_trades(state, [record])  # taped since _seed_coin read
                else:
                    batch.append(record)
                    if len(batch) >= REPLAY_CHUNK:
                        apply(batch)
                        batch = []
        except (IntegrityError, OSError) as exc:
            log.error("tape_replay_failed", coin=coin, error=str(exc))
            taint(state, coin, from_ms, now_ms)
        apply(batch)
    return untaped


def _seed_coin(state: AggState, settings: Settings, coin: str, from_ms: int, now_ms: int) -> bool:
    """A coin seen for the first time: coverage and last close from the tape. False when
    its tape is empty (the venue's replay will be its first record)."""
    start = coverage_start_ms(settings.data_dir, coin)
    state.joined_by_coin[coin] = now_ms if start is None else start
    last = last_trade_before(settings.data_dir, coin, from_ms)
    if last is not None:
        seed_trades(state, [last])
    return start is not None
