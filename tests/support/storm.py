"""Signal storms: start a real process in its own process group (as a shell job), wait until
it is serving, then send the whole group two SIGTERMs 1 ms apart, or two SIGINTs 50 ms apart
(Ctrl-C twice). A trial passes only if the process exits 0 within 5 s and leaves no process
of its run dir behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hlstream.sim.exchange import FakeExchange
from tests.support.pipeline import Pipeline, pids_with_run_dir
from tests.support.wait import wait_for

PARALLEL = 4
STOP_WITHIN_S = 5.0
STORMS = {
    "sigterm_x2_1ms": (signal.SIGTERM, signal.SIGTERM, 0.001),
    "sigint_x2_50ms": (signal.SIGINT, signal.SIGINT, 0.050),
}


def _storm(pgid: int, storm: str) -> None:
    first, second, gap_s = STORMS[storm]
    os.killpg(pgid, first)
    time.sleep(gap_s)
    with contextlib.suppress(ProcessLookupError):  # gone already: a fast clean stop
        os.killpg(pgid, second)


def _stopped(
    proc: subprocess.Popen[bytes], run_dir: Path, log: Path, storm: str, within_s: float
) -> str | None:
    """None if `proc` exited 0 within the limit and nothing of its run dir survives."""
    sent = time.monotonic()
    _storm(proc.pid, storm)
    try:
        code = proc.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"{storm}: still running {within_s}s after the storm\n{log.read_text()[-2000:]}"
    took = time.monotonic() - sent
    if code != 0:
        return f"{storm}: exit {code} after {took:.2f}s\n{log.read_text()[-2000:]}"
    deadline = time.monotonic() + max(0.5, within_s - took)
    while pids_with_run_dir(run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = pids_with_run_dir(run_dir)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return f"{storm}: processes {left} outlived the stop" if left else None


def pipeline_trial(
    exchange: FakeExchange, base: Path, storm: str, within_s: float = STOP_WITHIN_S
) -> str | None:
    pipeline = Pipeline(exchange, base, coins="BTC,ETH", intervals="5s", backfill_hours="0")
    pipeline.start(new_session=True)
    assert pipeline.proc is not None
    try:
        pipeline.wait_ready()
        wait_for(lambda: pipeline.status("writer"), 20, "writer heartbeat")
    except AssertionError as exc:
        pipeline.proc.kill()
        return f"not ready: {exc}\n{pipeline.output()[-2000:]}"
    return _stopped(pipeline.proc, pipeline.run_dir, pipeline.output_path, storm, within_s)


def stage_trial(
    exchange: FakeExchange, base: Path, stage: str, storm: str, within_s: float = STOP_WITHIN_S
) -> str | None:
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
    return _stopped(proc, run_dir, log, storm, within_s)


def run_trials(trial: Callable[[Path, str], str | None], tmp_path: Path, trials: int) -> None:
    """`trials` runs of `trial` per storm, PARALLEL at a time; fail naming every failure."""
    jobs = [(index, storm) for index in range(trials) for storm in STORMS]
    with ThreadPoolExecutor(PARALLEL) as pool:
        failures = [
            failure
            for failure in pool.map(
                lambda job: trial(tmp_path / f"{job[1]}-{job[0]}", job[1]), jobs
            )
            if failure
        ]
    assert not failures, f"{len(failures)} of {len(jobs)} trials failed:\n" + "\n".join(failures)
