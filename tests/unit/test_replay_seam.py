"""The catch-up seam is drawn in tape bytes, not in time: a block of trades sharing one
millisecond that the replay cut is completed from the live bus, with none repeated
(hlstream/tap.py `CatchUpTap`)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import zmq

from hlstream.common.messages import TapeSpan, Trade, TradeBatch
from hlstream.tap import CatchUpTap, TapMessage

T = 1_785_648_520_000
DAY = "2026-08-02"


def _block(*tids: int) -> tuple[Trade, ...]:
    return tuple(Trade("BTC", "buy", "10.5", "1", T, tid, "") for tid in tids)


def test_a_block_cut_by_the_replay_is_completed_live_without_repeats(tmp_path: Path) -> None:
    replayed = {DAY: 500}  # the replay stopped after the message holding tids 1 and 2
    in_tape = TradeBatch("BTC", T, _block(1, 2), TapeSpan(DAY, 380, 500))
    after = TradeBatch("BTC", T, _block(3, 4), TapeSpan(DAY, 500, 620))  # same millisecond

    context = zmq.Context()
    publisher, replayer = context.socket(zmq.PUB), context.socket(zmq.ROUTER)
    publisher.bind(f"ipc://{tmp_path}/t.sock")  # a tap refuses a path nothing serves
    replayer.bind(f"ipc://{tmp_path}/r.sock")
    tap = CatchUpTap(f"ipc://{tmp_path}/t.sock", f"ipc://{tmp_path}/r.sock", ["BTC"], T)
    try:
        tap.replayed = {"BTC": replayed}
        for batch, new in ((in_tape, False), (after, True)):
            assert batch.tape is not None
            data = {
                "coin": "BTC",
                "trades": [msgspec.structs.asdict(t) for t in batch.trades],
                "tape": [batch.tape.day, batch.tape.start, batch.tape.end],
            }
            assert tap._is_new(TapMessage("trade.BTC|", data, "ok", 0)) is new
    finally:
        tap.close()
        publisher.close(linger=0)
        replayer.close(linger=0)
        context.term()
