"""Ingest's publishing path in one process, a venue block at a time:
`python -m bench.ingest_burst [--blocks 100] [--trades 86] [--no-users] [--cpu] [--out FILE]`.

Each block is what `bench/fastfeed.py` sends in burst mode: one trades frame per coin (5
coins), all in one read. Ingest's handler takes each frame as its link does (parse, dedupe,
tape, publish to a bus socket nobody reads), and the time of each step is summed per block.
Run twice: blocks back to back (caches warm), and with 85 ms of idle before each block, as
between the venue's blocks (caches and CPU cold). No socket read, no other process: what
the tap latency bench measures comes on top of this. The venue sends `users` (buyer and
seller) with every trade; `--no-users` leaves them out of the frames, to see what they cost.
`--cpu` times each step in the thread's CPU time rather than wall time: steadier on a busy
machine, where other processes' time would otherwise count.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import zmq

from bench.fastfeed import Feed
from hlstream.common.bus_io import Publisher
from hlstream.common.config import Settings
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.services.ingest.core.dedupe import admit_batch
from hlstream.services.ingest.core.parse import parse_frame
from hlstream.services.ingest.publisher import TapeFirst, open_tape
from hlstream.services.ingest.shell import Ingest
from hlstream.services.ingest.wsframes import FrameParser

COINS = ["BTC", "ETH", "SOL", "XRP", "DOGE"]
STEPS = ("parse", "dedupe", "tape_format", "write_publish")
IDLE_S = 0.085


def measure(
    blocks: int, trades: int, idle_s: float, data_dir: Path, users: bool = True, cpu: bool = False
) -> dict[str, float]:
    """Mean microseconds per block of each step, for `blocks` blocks after `idle_s` each."""
    settings = Settings(data_dir=data_dir / "data", run_dir=data_dir / "run", coins=tuple(COINS))
    context = zmq.Context()
    ingest = Ingest(settings, StopFlag(), EventLog("bench"), context)
    out = ingest.out = TapeFirst(
        open_tape(settings.data_dir, ingest.log),
        Publisher(context, f"ipc://{data_dir / 'bus.sock'}"),
        ingest.log,
    )
    feed = Feed(COINS, 5000, trades, seed=1, users=users)
    start_ms = int(time.time() * 1000)
    wire = [
        feed.frames(dict.fromkeys(COINS, trades), start_ms + i * 85, True) for i in range(blocks)
    ]
    totals = dict.fromkeys(STEPS, 0.0)
    clock = time.thread_time if cpu else time.perf_counter
    for data in wire:
        if idle_s:
            time.sleep(idle_s)
        parser = FrameParser()
        parser.feed(data)
        while (message := parser.next()) is not None:
            t0 = clock()
            frame = parse_frame(message[1])
            t1 = clock()
            admission = admit_batch(ingest.deduper, ingest.replay, frame.coin, list(frame.trades))
            t2 = clock()
            out.hold(frame.coin, admission.fresh, start_ms, start_ms * 1000)
            out._tape_held()
            t3 = clock()
            out.flush(ingest._covered_now)
            t4 = clock()
            for step, seconds in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                totals[step] += seconds
    out.bus.close()
    out.tape.close()
    context.term()
    result = {step: round(total / blocks * 1e6, 1) for step, total in totals.items()}
    result["block_us"] = round(sum(result[step] for step in STEPS), 1)
    result["us_per_trade"] = round(result["block_us"] / (trades * len(COINS)), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--trades", type=int, default=86, help="per coin per block")
    parser.add_argument("--no-users", action="store_true", help="frames without `users`")
    parser.add_argument("--cpu", action="store_true", help="time steps in thread CPU time")
    parser.add_argument("--out", default="bench/results/ingest_burst.json")
    args = parser.parse_args()
    results = {}
    for name, idle_s in (("warm", 0.0), ("after_idle", IDLE_S)):
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = measure(
                args.blocks, args.trades, idle_s, Path(tmp), not args.no_users, args.cpu
            )
        print(name, json.dumps(results[name]))
    out = {"coins": len(COINS), "trades_per_frame": args.trades, "users": not args.no_users}
    out["clock"] = "thread_cpu" if args.cpu else "wall"
    out.update(results)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
