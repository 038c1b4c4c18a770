"""Throughput, CPU per trade and tap latency of the real pipeline on a fast fake feed.

    .venv/bin/python -m bench.throughput [--rates 20000,50000,100000] [--per-frame 1,5,20]
        [--seconds 20] [--coins BTC,ETH,SOL,XRP,DOGE] [--tap-rate 5000] [--burst-ms 70-100]

For each trades-per-frame and rate: bench/fastfeed.py (its own process, same machine)
sends trades evenly in frames of that size; `hlstream run` (supervisord, 3 stages, trade
tape on, 5 s bars) streams them; every 5 s row of the measured windows is compared with
the feed's exact truth (zero loss = every row equal, none missing). CPU seconds per stage
over the load window give µs of CPU per trade. Then the tap latency run: frames in bursts as
the venue sends them (one frame per coin per block, every 70-100 ms), a separate tap process
on trades.sock measuring receipt - ingest's `recv_us`. The naive streamer (bench/naive.py)
runs on the same feed for the ratio. Writes bench/results/throughput.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.pipeline import proc_sample
from hlstream.common.timebucket import parse_window
from tests.support.pipeline import Pipeline

WINDOW_MS = 5_000
GRACE_MS = 2_000  # the aggregator's default grace
SLACK_MS = 300
SETTLE_S = 9.0  # grace + a window + slack, for the last windows to reach the disk


@dataclass
class FeedAddress:
    """What tests.support.pipeline.Pipeline needs of an exchange."""

    ws_url: str
    info_url: str = "http://127.0.0.1:9/info"  # never asked: no backfill for 5s, no checks


class FastFeed:
    """bench/fastfeed.py in a subprocess."""

    def __init__(self, coins: str, rate: int, per_frame: int, burst_ms: str, truth: Path):
        self.truth_path = truth
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.fastfeed",
                f"--coins={coins}",
                f"--rate={rate}",
                f"--per-frame={per_frame}",
                f"--burst-ms={burst_ms}",
                f"--truth={truth}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline().split()[1])
        self.address = FeedAddress(f"ws://127.0.0.1:{port}/ws")

    def command(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> dict[str, Any]:
        self.command()
        self.proc.wait(timeout=60)
        data: dict[str, Any] = json.loads(self.truth_path.read_text())
        return data


def judge(data_dir: Path, coins: list[str], truth: dict[str, Any], span: tuple[int, int]) -> dict:
    """Rows equal to truth / wrong / missing over the windows fully inside `span`."""
    exact = wrong = missing = 0
    odd: list[str] = []  # the first rows that are not exact, for a look at the files
    for coin in coins:
        path = data_dir / f"{coin.lower()}_5s_data.csv"
        written = {}
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                stamp, rest = line.split(",", 1)
                written[parse_window(stamp)] = rest
        for start, *values in truth["rows"][coin]:
            if not span[0] <= start < span[1]:
                continue
            if start not in written:
                missing += 1
                odd.append(f"{coin} {start} missing")
            elif written[start] == ",".join(values):
                exact += 1
            else:
                wrong += 1
                odd.append(f"{coin} {start} wrong")
    verdict = {"rows_exact": exact, "rows_wrong": wrong, "rows_missing": missing}
    return verdict | ({"rows_not_exact": odd[:10], "span": list(span)} if odd else {})


def measured_span(go_ms: float, stop_ms: float) -> tuple[int, int]:
    """Whole windows between go and stop whose grace also ended before the feed stopped: the
    feed closes its sockets when it stops, and the aggregator closes a window only once
    ingest vouches for its end + grace (a window ending less than the grace before the stop
    would wait HOLD_MAX for that word and miss the settle time)."""
    first = int(go_ms) - int(go_ms) % WINDOW_MS + WINDOW_MS
    last_end = int(stop_ms) - GRACE_MS - SLACK_MS
    return first, last_end - last_end % WINDOW_MS


def run_hlstream(
    args: argparse.Namespace, rate: int, per_frame: int, burst: str, base: Path, tap: bool
) -> dict[str, Any]:
    feed = FastFeed(args.coins, rate, per_frame, burst, base / "truth.json")
    pipeline = Pipeline(
        feed.address,  # type: ignore[arg-type]
        base,
        coins=args.coins,
        intervals="5s",
        backfill_hours="0",
        validate_coins="false",
        log_level="WARNING",
    ).start()
    coins = args.coins.split(",")
    result: dict[str, Any] = {
        "system": "hlstream",
        "rate": rate,
        "per_frame": per_frame,
        "burst_ms": burst,
    }
    try:
        pipeline.wait_ready(60)
        pids = {
            s: int(pipeline.supervisorctl("pid", s).strip())
            for s in ("ingest", "aggregator", "writer")
        }
        pids["feed"] = feed.proc.pid
        tapper = None
        if tap:
            tapper = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.taplat",
                    f"ipc://{pipeline.run_dir.resolve()}/trades.sock",
                    str(args.seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.5)
        before = {name: proc_sample(pid)[0] for name, pid in pids.items()}
        go_ms = time.time() * 1000
        feed.command()
        spies = flame_graphs(args, pids, f"{per_frame}x{rate}") if args.profile and not tap else []
        time.sleep(args.seconds)
        for spy in spies:
            spy.wait(timeout=60)
        cpu = {name: proc_sample(pid)[0] - before[name] for name, pid in pids.items()}
        rss = {name: round(proc_sample(pid)[1] / 1e6, 1) for name, pid in pids.items()}
        stop_ms = time.time() * 1000
        truth = feed.finish()
        time.sleep(SETTLE_S)
        if tapper is not None:
            output, _ = tapper.communicate(timeout=60)
            result.update(json.loads(output))
    finally:
        code, _ = pipeline.stop()
        if feed.proc.poll() is None:
            feed.proc.kill()
    sent = max(1, truth["sent"])
    result.update(
        sent_per_s=round(sent / ((stop_ms - go_ms) / 1000)),
        cpu_us_per_trade={k: round(v / sent * 1e6, 2) for k, v in cpu.items()},
        rss_mb=rss,
        stop_exit_code=code,
        **judge(pipeline.data_dir, coins, truth, measured_span(go_ms, stop_ms)),
    )
    result["cpu_us_per_trade"]["pipeline"] = round(
        sum(v for k, v in result["cpu_us_per_trade"].items() if k != "feed"), 2
    )
    if "rows_not_exact" in result and args.keep_failed:
        kept = Path(args.keep_failed) / f"{per_frame}x{rate}-{int(go_ms)}"
        shutil.copytree(base, kept, ignore=shutil.ignore_patterns("*.sock"))  # to see why
        result["kept"] = str(kept)
    return result


def flame_graphs(args: argparse.Namespace, pids: dict[str, int], label: str) -> list[Any]:
    """py-spy (the `bench` extra) records each stage for the load window into an SVG."""
    spy = Path(sys.executable).with_name("py-spy")
    out = []
    for stage in ("ingest", "aggregator", "writer"):
        raw = args.profile_format == "txt"  # collapsed stacks, for reading hot spots
        target = Path(args.out).parent / f"flame-{stage}-{label}.{args.profile_format}"
        out.append(
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(pids[stage]),
                    "--duration",
                    str(int(args.seconds) - 1),
                    "--rate",
                    "250",
                    "--nonblocking",
                    "--format",
                    "raw" if raw else "flamegraph",
                    "-o",
                    str(target),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return out


def run_naive(args: argparse.Namespace, rate: int, per_frame: int, base: Path) -> dict[str, Any]:
    base.mkdir(parents=True, exist_ok=True)
    feed = FastFeed(args.coins, rate, per_frame, "0", base / "truth.json")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.naive",
            feed.address.ws_url,
            str(base),
            args.coins,
            str(WINDOW_MS // 1000),
        ]
    )
    time.sleep(2)
    before = proc_sample(proc.pid)[0]
    go_ms = time.time() * 1000
    feed.command()
    time.sleep(args.seconds)
    cpu = proc_sample(proc.pid)[0] - before
    stop_ms = time.time() * 1000
    truth = feed.finish()
    proc.terminate()
    proc.wait(timeout=20)
    coins = args.coins.split(",")
    for coin in coins:  # the naive file name differs; judge() reads *_5s_data.csv
        naive = base / f"{coin.lower()}_naive.csv"
        if naive.exists():
            naive.rename(base / f"{coin.lower()}_5s_data.csv")
    sent = max(1, truth["sent"])
    span = measured_span(go_ms, stop_ms)
    return {
        "system": "naive",
        "rate": rate,
        "per_frame": per_frame,
        "sent_per_s": round(sent / ((stop_ms - go_ms) / 1000)),
        "cpu_us_per_trade": {"naive": round(cpu / sent * 1e6, 2)},
        **judge(base, coins, truth, (span[0], span[1] - WINDOW_MS)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20000,50000,100000")
    parser.add_argument("--per-frame", default="1,5,20")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--coins", default="BTC,ETH,SOL,XRP,DOGE")
    parser.add_argument("--tap-rate", type=int, default=5000)
    parser.add_argument("--burst-ms", default="70-100")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--keep-failed", default="", help="copy a run with odd rows here")
    parser.add_argument("--no-tap", action="store_true")
    parser.add_argument("--tap-only", action="store_true", help="only the tap latency run")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graphs per stage")
    parser.add_argument("--profile-format", default="svg", choices=("svg", "txt"))
    parser.add_argument("--out", default="bench/results/throughput.json")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="hlthru") as tmp:
        root = Path(tmp)
        if not args.no_tap:
            results.append(run_hlstream(args, args.tap_rate, 0, args.burst_ms, root / "tap", True))
            print(json.dumps(results[-1]), flush=True)
        for per_frame in (int(x) for x in args.per_frame.split(",") if not args.tap_only):
            for rate in (int(x) for x in args.rates.split(",")):
                base = root / f"h{per_frame}-{rate}"
                results.append(run_hlstream(args, rate, per_frame, "0", base, False))
                print(json.dumps(results[-1]), flush=True)
                if not args.no_naive and per_frame == 5:
                    results.append(run_naive(args, rate, per_frame, root / f"n{rate}"))
                    print(json.dumps(results[-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"{'system':<9}{'frame':>6}{'rate':>8}{'sent/s':>8}{'exact':>7}{'wrong':>6}"
        f"{'miss':>6}  CPU µs/trade"
    )
    for r in results:
        cpu = " ".join(f"{k}={v}" for k, v in r["cpu_us_per_trade"].items())
        print(
            f"{r['system']:<9}{r['per_frame']:>6}{r['rate']:>8}{r['sent_per_s']:>8}"
            f"{r['rows_exact']:>7}{r['rows_wrong']:>6}{r['rows_missing']:>6}  {cpu}"
        )
        if "tap_ms_from_ingest" in r:
            print(f"  tap latency ms (recv_us -> tap): {r['tap_ms_from_ingest']}")


if __name__ == "__main__":
    main()
