"""The relay into a real JetStream with acks, and bar upserts into a real PostgreSQL.

`python -m bench.relay [--runs 3] [--out bench/results/relay.json]`

A writer thread appends trades to a tape segment at a steady rate (5k and 20k trades/s, then
a 100k trades/s burst of one second), each stamped `ts_ms` = the wall time of its commit
(write + flush of its group). The relay runs in-process on its own thread against a local
nats-server (`-js`, file store); per acked batch it reports each trade's lag from commit to
the server's ack. Reported: trades/s acked, relay CPU µs per trade (its thread's CPU time),
lag p50/p99, and whether it caught up; each run on a fresh server, `--runs` times, with the
median and the worst of each figure (the two cores are shared: one run can be unlucky). Then
`PostgresSink.upsert` of 20,000 bars in batches of 500 against a real PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.taplat import percentile
from hlstream.common.clock import SystemClock
from hlstream.common.config import load_settings
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog, setup_logging
from hlstream.common.messages import Trade
from hlstream.common.sinks import SinkSecrets
from hlstream.common.tape.format import HEADER, Record, format_record, segment_day, segment_path
from hlstream.services.relay.core import JsBar
from hlstream.services.relay.shell import Relay
from tests.support.servers import NatsServer, PostgresServer

COIN = "BTC"
GROUP_S = 0.01  # the tape writer commits a group every 10 ms


def _write_tape(data_dir: Path, rate: float, seconds: float, tid0: int) -> int:
    """Append `rate` trades/s for `seconds` to today's BTC segment; return how many."""
    day = segment_day(int(time.time() * 1000))
    path = segment_path(data_dir, COIN, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    written = 0
    start = time.monotonic()
    with open(path, "a") as handle:
        if new:
            handle.write(HEADER)
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(rate * elapsed) - written
            if due > 0:
                now_ms = int(time.time() * 1000)
                tids = range(tid0 + written, tid0 + written + due)
                trades = [Trade(COIN, "buy", "63471.0", "0.001", now_ms, t, "0xab") for t in tids]
                lines = [format_record(trade) for trade in trades]
                handle.write("".join(lines))
                handle.flush()
                written += due
            time.sleep(GROUP_S)
    return written


def _run_relay_phase(data_dir: Path, run_dir: Path, url: str) -> dict[str, Any]:
    settings = replace(
        load_settings(environ={}),
        coins=(COIN,),
        data_dir=data_dir,
        run_dir=run_dir,
        nats_url=url,
    )
    lags: list[int] = []
    acked = [0]
    cpu = [0.0]

    def on_acked(records: list[Record], ack_ms: int) -> None:
        for record in records:
            if isinstance(record, Trade):
                lags.append(ack_ms - record.ts_ms)
        acked[0] += len(records)
        cpu[0] = time.thread_time()

    stop = StopFlag()
    relay = Relay(
        settings, SinkSecrets(), stop, EventLog("relay"), SystemClock(), on_acked=on_acked
    )
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    results: dict[str, Any] = {}
    tid = 1
    for label, rate, seconds in (
        ("5k", 5_000, 8.0),
        ("20k", 20_000, 8.0),
        ("burst_100k", 100_000, 1.0),
    ):
        lags.clear()
        acked_before, cpu_before = acked[0], cpu[0]
        started = time.monotonic()
        written = _write_tape(data_dir, rate, seconds, tid)
        tid += written
        deadline = time.monotonic() + 120
        while acked[0] - acked_before < written and time.monotonic() < deadline:
            time.sleep(0.01)
        took = time.monotonic() - started
        done = acked[0] - acked_before
        results[label] = {
            "rate_offered": rate,
            "written": written,
            "acked": done,
            "caught_up_s": round(took - seconds, 2),
            "acked_per_s": round(done / took),
            "cpu_us_per_trade": round((cpu[0] - cpu_before) * 1e6 / max(done, 1), 1),
            "lag_ms_p50": percentile(sorted(lags), 50),
            "lag_ms_p99": percentile(sorted(lags), 99),
            "lost": written - done,
        }
        print(label, results[label], flush=True)
    results["duplicates"] = relay.counters.duplicates
    stop.set()
    thread.join(30)
    return results


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase and figure: the median of the runs, and the worst run's value."""
    out: dict[str, Any] = {}
    for label in ("5k", "20k", "burst_100k"):
        phases = [run[label] for run in runs]
        median: dict[str, Any] = {}
        worst: dict[str, Any] = {}
        for key in phases[0]:
            values = sorted(phase[key] for phase in phases)
            median[key] = statistics.median(values)
            worst[key] = values[0] if key.startswith("acked") else values[-1]
        out[label] = {"median": median, "worst": worst}
    return out


def _nats_runs(base: Path, count: int) -> dict[str, Any]:
    runs = []
    for i in range(count):
        run_base = base / f"run{i}"
        server = NatsServer(run_base).start()
        try:
            (run_base / "run").mkdir()
            runs.append(_run_relay_phase(run_base / "data", run_base / "run", server.url))
        finally:
            server.stop()
    return {"runs": runs, **_summary(runs)}


def _postgres_upserts() -> dict[str, Any]:
    from hlstream.services.relay.postgres_io import PostgresSink

    server = PostgresServer().start()
    try:
        settings = load_settings(environ={"HLSTREAM_POSTGRES_DSN": server.dsn(password=True)})
        sink = PostgresSink(settings, SinkSecrets())
        sink.connect()
        ohlcv = ("63471.0", "63480.5", "63400.0", "63450.0", "12.34567")
        bars = [JsBar(COIN, "1m", i * 60_000, *ohlcv, None, True, 0) for i in range(20_000)]
        started = time.monotonic()
        for i in range(0, len(bars), 500):
            sink.upsert(bars[i : i + 500])
        took = time.monotonic() - started
        started = time.monotonic()
        for i in range(0, len(bars), 500):
            sink.upsert(bars[i : i + 500])  # re-sent: changes nothing
        took_again = time.monotonic() - started
        sink.close()
        out = {
            "upserts_per_s": round(len(bars) / took),
            "resent_per_s": round(len(bars) / took_again),
        }
        print("postgres", out, flush=True)
        return out
    finally:
        server.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/relay.json")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    setup_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="hlstream-bench-relay-") as tmp:
        results = {"nats": _nats_runs(Path(tmp), args.runs)}
    if not args.no_postgres:
        results["postgres"] = _postgres_upserts()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
