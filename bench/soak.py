"""Soak: the real pipeline against the fake exchange for a long while, with a fault every
30-60 s, watching each stage's memory and judging the files at the end.

    .venv/bin/python -m bench.soak [--minutes 30] [--rate 2000] [--coins BTC,ETH,SOL,XRP]

Faults go round-robin over the kinds of tests/faults/test_fault_schedule.py (dropped
connections, replayed duplicates, malformed frames, zombie feed, SIGSTOP/SIGCONT and kill -9
of each stage, REST 429/500/timeout during a writer restart), injected by the same
`FaultDriver`. RSS of each stage (/proc/<pid>/statm; pids from supervisorctl) is sampled at
the start, every minute and at the end; a kill -9 restarts a stage, so a sample names its pid.
The end judgement is the test's `judge` (1m rows equal truth; 5s rows equal truth outside the
windows around lossy faults; no torn line, duplicate or hole; `hlstream verify` passes). To
keep the fake's memory flat, trades older than TRIM_AGE_S are folded into reference rows
every minute and dropped from its log. Prints a table, writes bench/results/soak.json, and
exits 1 when the judgement found a problem. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hlstream.sim.exchange import FakeExchange
from hlstream.sim.market import truth_rows
from tests.faults.test_fault_schedule import (
    STAGES,
    FaultDriver,
    all_running,
    faults_summary,
    judge,
    now_ms,
)
from tests.support.pipeline import Pipeline, read_rows
from tests.support.wait import wait_for

M = 60_000
INTERVALS = {"5s": 5_000, "1m": 60_000}
TRIM_AGE_S = 300  # REST repairs and replays only ever need the last few minutes
RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
PAGE = os.sysconf("SC_PAGE_SIZE")


class Truth:
    """Reference rows per (coin, interval) folded from trimmed chunks of the fake's log."""

    def __init__(self, exchange: FakeExchange, coins: tuple[str, ...]) -> None:
        self.exchange = exchange
        self.coins = coins
        self.rows: dict[tuple[str, int], dict[int, Any]] = {}
        self.seed: dict[str, dict[str, Any]] = {}  # last trade before the folded part
        self.folded_to = 0

    def _fold(self, coin: str, chunk: list[dict[str, Any]], from_ms: int, to_ms: int) -> None:
        seeded = ([self.seed[coin]] if coin in self.seed else []) + chunk
        for interval_ms in INTERVALS.values():
            rows = self.rows.setdefault((coin, interval_ms), {})
            for row in truth_rows(seeded, interval_ms, from_ms, to_ms):
                rows[row[0]] = row
        if chunk:
            self.seed[coin] = chunk[-1]

    def trim(self, older_than_s: float = TRIM_AGE_S) -> None:
        """Fold and drop trades older than `older_than_s`, cut at a minute boundary."""
        cut = (now_ms() - int(older_than_s * 1000)) // M * M
        if cut <= self.folded_to:
            return
        chunks = self.exchange.trim_log(cut)
        for coin in self.coins:
            self._fold(coin, chunks.get(coin, []), self.folded_to, cut)
        self.folded_to = cut

    def of(self, coin: str, interval_ms: int, from_ms: int, to_ms: int) -> list[Any]:
        """Reference rows for windows in [from_ms, to_ms) (folded part + the live log)."""
        live = truth_rows(
            ([self.seed[coin]] if coin in self.seed else []) + self.exchange.trades(coin),
            interval_ms,
            self.folded_to,
            to_ms,
        )
        rows = dict(self.rows.get((coin, interval_ms), {}))
        rows.update({row[0]: row for row in live})
        return [rows[start] for start in sorted(rows) if from_ms <= start < to_ms]


def rss_sample(driver: FaultDriver, started: float) -> dict[str, Any]:
    """RSS (MB) and pid of each stage now."""
    stages: dict[str, Any] = {}
    for stage in STAGES:
        pid = driver.pid(stage)
        try:
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) if pid else 0
        except OSError:
            pages = 0
        stages[stage] = {"pid": pid, "rss_mb": round(pages * PAGE / 1e6, 1)}
    return {"t_s": round(time.monotonic() - started), "faults": len(driver.faults), **stages}


def print_row(sample: dict[str, Any]) -> None:
    cells = [f"{sample['t_s']:>6}", f"{sample['faults']:>6}"]
    cells += [f"{sample[s]['rss_mb']:>8.1f} ({sample[s]['pid']:>7})" for s in STAGES]
    print(" | ".join(cells), flush=True)


def fault_steps(driver: FaultDriver) -> list[tuple[str, Any]]:
    """Round-robin order: (name, callable)."""
    steps: list[tuple[str, Any]] = [
        ("drop", driver.drop),
        ("malformed", driver.malformed),
        ("zombie", driver.zombie),
        ("replay_duplicates", driver.replay_duplicates),
    ]
    for stage in STAGES:
        steps.append((f"sigstop_{stage}", lambda s=stage: driver.sigstop(s)))
        steps.append((f"kill9_{stage}", lambda s=stage: driver.kill9(s)))
    steps.append(("rest_trouble_writer_restart", driver.rest_trouble_with_writer_restart))
    return steps


def soak(
    minutes: float, rate: float, coins: tuple[str, ...], seed: int, base: Path
) -> dict[str, Any]:
    exchange = FakeExchange(
        coins=list(coins), rate_per_coin=rate / len(coins), seed=seed, history_hours=0.5
    )
    exchange.pause_trades(True)
    exchange.start()
    truth = Truth(exchange, coins)
    pipeline = Pipeline(
        exchange,
        base,
        coins=",".join(coins),
        intervals=",".join(INTERVALS),
        backfill_hours="0.25",
        stale_seconds="4",
    ).start()
    driver = FaultDriver(pipeline, exchange, coins)
    rng = random.Random(seed)
    samples: list[dict[str, Any]] = []
    states: dict[str, str] = {}
    started = time.monotonic()
    print(f"soak: {minutes} min, {rate:g} trades/s over {len(coins)} coins, dir {base}")
    print("   t_s | faults | " + " | ".join(f"{s + ' MB (pid)':>18}" for s in STAGES))
    try:
        with driver.fault("startup"):
            pipeline.wait_ready()
            exchange.pause_trades(False)
            wait_for(
                lambda: all(len(read_rows(pipeline.csv(c, "5s"))) >= 2 for c in coins),
                60,
                "first 5s rows",
            )
        end = started + minutes * 60
        samples.append(rss_sample(driver, started))
        print_row(samples[-1])
        next_sample = time.monotonic() + 60
        steps = fault_steps(driver)
        step_index = 0
        next_fault = time.monotonic() + rng.uniform(30, 60)
        while time.monotonic() < end - 20:  # the last ~20 s stay quiet
            now = time.monotonic()
            if now >= next_sample:
                samples.append(rss_sample(driver, started))
                print_row(samples[-1])
                truth.trim()
                next_sample = now + 60
            if now >= next_fault:
                name, step = steps[step_index % len(steps)]
                ok_to_start = name != "zombie" or 3_000 <= now_ms() % M <= 30_000
                if ok_to_start:
                    step()
                    step_index += 1
                    print(
                        f"  fault {step_index}: {name} "
                        f"({driver.faults[-1].end_ms - driver.faults[-1].start_ms} ms)",
                        flush=True,
                    )
                    next_fault = time.monotonic() + rng.uniform(30, 60)
            time.sleep(0.5)
        # Let the 1m window of the last fault close and reach the disk.
        last = driver.faults[-1].end_ms
        for coin in coins:
            wait_for(
                lambda c=coin: last - last % M in {r[0] for r in read_rows(pipeline.csv(c, "1m"))},
                90,
                "1m window of the last fault on disk",
            )
        time.sleep(3)
        samples.append(rss_sample(driver, started))
        print_row(samples[-1])
        states = all_running(pipeline)
    finally:
        driver.resume_all()
        code, output = pipeline.stop()
    report = judge(pipeline, exchange, coins, driver.faults, truth_of=truth.of)
    exchange.stop()
    if code != 0:
        report["problems"].append(f"hlstream run exited {code}: {output[-1500:]}")
    if states != dict.fromkeys(STAGES, "RUNNING"):
        report["problems"].append(f"not every stage RUNNING before stop: {states}")
    return {
        "minutes": minutes,
        "rate_per_s": rate,
        "coins": list(coins),
        "elapsed_s": round(time.monotonic() - started),
        "start_rss_mb": {s: samples[0][s]["rss_mb"] for s in STAGES},
        "end_rss_mb": {s: samples[-1][s]["rss_mb"] for s in STAGES},
        "samples": samples,
        "faults": faults_summary(driver.faults),
        "run_exit": code,
        "states_before_stop": states,
        "exact": not report["problems"],
        "judgement": report,
        "data_dir": str(pipeline.data_dir),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="trades/s over all coins")
    parser.add_argument("--coins", default="BTC,ETH,SOL,XRP")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, help="keep data and run dirs here (default: temp)")
    args = parser.parse_args(argv)
    coins = tuple(c for c in args.coins.split(",") if c)
    base = args.dir or Path(tempfile.mkdtemp(prefix="hlstream-soak-"))
    result = soak(args.minutes, args.rate, coins, args.seed, base)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    judgement = result["judgement"]
    print(
        "\nRSS MB start -> end: "
        + ", ".join(f"{s} {result['start_rss_mb'][s]} -> {result['end_rss_mb'][s]}" for s in STAGES)
    )
    print(
        f"faults: {len(result['faults'])}; rows 1m {judgement['rows_1m']}, 5s "
        f"{judgement['rows_5s']} ({judgement['checked_5s']} judged); verify exit "
        f"{judgement['verify_exit']}; exact: {result['exact']}"
    )
    for problem in judgement["problems"][:20]:
        print("  problem:", problem)
    print(f"wrote {RESULTS}")
    return 0 if result["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
