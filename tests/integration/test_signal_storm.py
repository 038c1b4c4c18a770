"""Signal storms: any number of SIGINT/SIGTERM, in any order, ends in a clean stop (issue 10).

Each trial starts a real process in its own process group (as a shell job), waits until it is
serving, then sends the whole group one of two storms: two SIGTERMs 1 ms apart, or two
SIGINTs 50 ms apart (Ctrl-C twice). The trial passes only if the process exits 0 within 5 s
and leaves no process of its run dir behind. Trials run a few at a time to keep the suite fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hlstream.sim.exchange import FakeExchange
from tests.integration.harness import Pipeline, pids_with_run_dir, wait_for

TRIALS = int(os.environ.get("STORM_TRIALS", "20"))
PARALLEL = 4
STOP_WITHIN_S = 5.0
STORMS = {
    "sigterm_x2_1ms": (signal.SIGTERM, signal.SIGTERM, 0.001),
    "sigint_x2_50ms": (signal.SIGINT, signal.SIGINT, 0.050),
}


@pytest.fixture(scope="module")
def exchange():
    fake = FakeExchange(coins=["BTC", "ETH"], rate_per_coin=8.0, seed=3, history_hours=0.1)
    fake.start()
    yield fake
    fake.stop()


def _storm(pgid: int, storm: str) -> None:
    first, second, gap_s = STORMS[storm]
    os.killpg(pgid, first)
    time.sleep(gap_s)
    with contextlib.suppress(ProcessLookupError):  # gone already: a fast clean stop
        os.killpg(pgid, second)


def _stopped(proc: subprocess.Popen[bytes], run_dir: Path, log: Path, storm: str) -> str | None:
    """None if `proc` exited 0 within the limit and nothing of its run dir survives."""
    sent = time.monotonic()
    _storm(proc.pid, storm)
    try:
        code = proc.wait(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"{storm}: still running {STOP_WITHIN_S}s after the storm\n{log.read_text()[-2000:]}"
    took = time.monotonic() - sent
    if code != 0:
        return f"{storm}: exit {code} after {took:.2f}s\n{log.read_text()[-2000:]}"
    deadline = time.monotonic() + max(0.5, STOP_WITHIN_S - took)
    while pids_with_run_dir(run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = pids_with_run_dir(run_dir)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return f"{storm}: processes {left} outlived the stop" if left else None


def _pipeline_trial(exchange: FakeExchange, base: Path, storm: str) -> str | None:
    pipeline = Pipeline(exchange, base, coins="BTC,ETH", intervals="5s", backfill_hours="0")
    pipeline.start(new_session=True)
    assert pipeline.proc is not None
    try:
        pipeline.wait_ready()
        wait_for(lambda: pipeline.status("writer"), 20, "writer heartbeat")
    except AssertionError as exc:
        pipeline.proc.kill()
        return f"not ready: {exc}\n{pipeline.output()[-2000:]}"
    return _stopped(pipeline.proc, pipeline.run_dir, pipeline.output_path, storm)


def _stage_trial(exchange: FakeExchange, base: Path, stage: str, storm: str) -> str | None:
    base.mkdir(parents=True)
    run_dir, log = base / "run", base / f"{stage}.log"
    env = dict(
        os.environ,
        HLSTREAM_WS_URL=exchange.ws_url,
        HLSTREAM_INFO_URL=exchange.info_url,
        HLSTREAM_DATA_DIR=str(base / "data"),
        HLSTREAM_RUN_DIR=str(run_dir),
        HLSTREAM_COINS="BTC,ETH",
        HLSTREAM_INTERVALS="5s",
        HLSTREAM_BACKFILL_HOURS="0",
        PYTHONUNBUFFERED="1",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"hlstream.services.{stage}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    status = run_dir / f"{stage}-status.json"
    try:
        wait_for(status.exists, 20, f"{stage} status file")
    except AssertionError as exc:
        proc.kill()
        proc.wait()
        return f"not ready: {exc}\n{log.read_text()[-2000:]}"
    return _stopped(proc, run_dir, log, storm)


def _run_trials(trial, tmp_path: Path) -> None:
    jobs = [(index, storm) for index in range(TRIALS) for storm in STORMS]
    with ThreadPoolExecutor(PARALLEL) as pool:
        failures = [
            failure
            for failure in pool.map(
                lambda job: trial(tmp_path / f"{job[1]}-{job[0]}", job[1]), jobs
            )
            if failure
        ]
    assert not failures, f"{len(failures)} of {len(jobs)} trials failed:\n" + "\n".join(failures)


def test_hlstream_run_survives_signal_storms(exchange, tmp_path):
    _run_trials(lambda base, storm: _pipeline_trial(exchange, base, storm), tmp_path)


@pytest.mark.parametrize("stage", ["ingest", "aggregator", "writer"])
def test_each_stage_alone_survives_signal_storms(exchange, tmp_path, stage):
    _run_trials(lambda base, storm: _stage_trial(exchange, base, stage, storm), tmp_path)
