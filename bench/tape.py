"""Benchmark the trade tape: append + group commit at a given trade rate, then read it back.

    .venv/bin/python -m bench.tape [--rate 20000] [--commit-ms 50] [--seconds 10]
                                   [--coins 8] [--no-fsync] [--dir PATH]

Trades for `seconds` of simulated market at `rate` trades/s (spread over `coins`, BTC busiest)
are cut into one batch per `commit_ms`, as ingest would group-commit them; each batch is
appended and committed (fsync on unless --no-fsync) as fast as the disk allows. Prints one
JSON line: sustained trades/s (headroom = that / rate), CPU µs per trade, commit latency
p50/p99 in ms, bytes on disk per trade, read-back (replay) trades/s, and the filesystem
type (on tmpfs fsync costs nothing: pass --dir on the data disk).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.taplat import percentile
from hlstream.common.log import EventLog
from hlstream.common.messages import Trade
from hlstream.common.tape.readers_io import read_tape
from hlstream.common.tape.writer_io import TapeWriter

COINS = ["BTC", "ETH", "SOL", "HYPE", "XRP", "DOGE", "PURR/USDC", "@107", "xyz:TSLA", "kPEPE"]
START_MS = 1_709_337_600_000 - 5_000  # 5 s before a UTC midnight: runs write two days


def make_batches(rate: int, commit_ms: int, seconds: float, coins: list[str]) -> list[list[Trade]]:
    """Realistic trades (venue-style decimal strings and 66-char hashes), one batch per commit."""
    rng = random.Random(7)
    weights = [1 / (rank + 1) for rank in range(len(coins))]
    per_batch = max(1, rate * commit_ms // 1000)
    batches: list[list[Trade]] = []
    tid = 400_000_000_000_000
    for index in range(int(seconds * 1000 / commit_ms)):
        ts_base = START_MS + index * commit_ms
        batch = []
        for coin in rng.choices(coins, weights, k=per_batch):
            tid += 1
            price = f"{rng.randint(100_000, 9_999_999) / 100:.2f}".rstrip("0").rstrip(".")
            size = f"{rng.randint(1, 500_000) / 100_000:.5f}".rstrip("0").rstrip(".")
            ts_ms = ts_base + rng.randrange(commit_ms)
            trade_hash = f"0x{rng.getrandbits(256):064x}"
            batch.append(
                Trade(
                    coin,
                    "buy" if rng.random() < 0.5 else "sell",
                    price,
                    size,
                    ts_ms,
                    tid,
                    trade_hash,
                )
            )
        batches.append(batch)
    return batches


def by_coin(batch: list[Trade]) -> dict[str, list[Trade]]:
    out: dict[str, list[Trade]] = {}
    for trade in batch:
        out.setdefault(trade.coin, []).append(trade)
    return out


def disk_usage(root: Path) -> tuple[int, int]:
    """(sum of file sizes, allocated bytes) of the segments under `root`."""
    size = allocated = 0
    for path in (root / "tape").rglob("*.csv"):
        stat = path.stat()
        size += stat.st_size
        allocated += stat.st_blocks * 512
    return size, allocated


def filesystem(path: Path) -> str:
    """Type of the filesystem holding `path` (a tmpfs makes fsync free), from /proc/mounts."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in mounts:
        _, mount, fs_type, *_ = line.split()
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, fs_type
    return kind


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    coins = COINS[: args.coins]
    batches = [  # as ingest hands them over: one coin's trades at a time
        list(by_coin(batch).items())
        for batch in make_batches(args.rate, args.commit_ms, args.seconds, coins)
    ]
    total = sum(len(trades) for batch in batches for _, trades in batch)
    commit_ms: list[float] = []
    writer = TapeWriter(root, EventLog("bench"), fsync=args.fsync)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for batch in batches:
        started = time.perf_counter()
        for coin, trades in batch:
            writer.append_trades(coin, trades)
        writer.commit()
        commit_ms.append((time.perf_counter() - started) * 1000)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    writer.close()
    size, allocated = disk_usage(root)
    read0 = time.perf_counter()
    read_back = sum(sum(1 for _ in read_tape(root, coin, 0)) for coin in coins)
    read_s = time.perf_counter() - read0
    if read_back != total:
        raise SystemExit(f"read back {read_back} trades, wrote {total}")
    return {
        "bench": "tape",
        "fsync": args.fsync,
        "fs": filesystem(root),
        "rate": args.rate,
        "commit_ms": args.commit_ms,
        "coins": len(coins),
        "trades": total,
        "commits": len(batches),
        "trades_per_s": round(total / wall),
        "headroom": round(total / wall / args.rate, 1),
        "cpu_us_per_trade": round(cpu / total * 1e6, 2),
        "commit_ms_p50": percentile(commit_ms, 50),
        "commit_ms_p99": percentile(commit_ms, 99),
        "bytes_per_trade": round(size / total, 1),
        "allocated_bytes_per_trade": round(allocated / total, 1),
        "replay_trades_per_s": round(total / read_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20_000, help="trades per second offered")
    parser.add_argument("--commit-ms", type=int, default=50, help="group-commit period")
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated market seconds")
    parser.add_argument("--coins", type=int, default=8, choices=range(1, len(COINS) + 1))
    parser.add_argument("--no-fsync", dest="fsync", action="store_false")
    parser.add_argument("--dir", type=Path, default=None, help="data dir (default: a temp dir)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="hlstream-tape-bench-"))
    try:
        print(json.dumps(run(args, root)), flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
