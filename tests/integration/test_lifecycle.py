"""Process lifetime (issue 10): nothing outlives `hlstream run`, leftovers never block a start,
one data dir has one writer, `make run` stops on one group SIGTERM, and `hlstream tap` says why
nothing arrives.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hlstream.common.lifecycle_io import SUPERVISOR_STARTSECS
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline, pids_with_run_dir
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


exchange = exchange_fixture(
    coins=["BTC", "ETH"], rate_per_coin=8.0, seed=4, history_hours=0.1, scope="module"
)


def _cli(pipeline: Pipeline, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return pipeline.cli(*args, timeout_s=timeout)


# supervisord stops the stages one by one and reaps each on its one-second tick: about 3 s
# alone, more beside other files' pipelines in the parallel workers.
SIGKILL_CLEANUP_S = 10.0


def test_sigkill_of_hlstream_run_leaves_no_process_behind(exchange, tmp_path):
    pipeline = Pipeline(exchange, tmp_path, coins="BTC,ETH", intervals="5s", backfill_hours="0")
    pipeline.start(new_session=True)
    assert pipeline.proc is not None
    pipeline.wait_ready()
    assert len(pids_with_run_dir(pipeline.run_dir)) >= 4, "supervisord + 3 stages running"

    pipeline.proc.kill()
    pipeline.proc.wait()
    killed = time.monotonic()
    wait_for(
        lambda: not pids_with_run_dir(pipeline.run_dir),
        SIGKILL_CLEANUP_S,
        "no process of the run dir left",
    )
    assert time.monotonic() - killed <= SIGKILL_CLEANUP_S

    # ...and the next start is not refused because of what the killed one left behind.
    again = Pipeline(exchange, tmp_path, coins="BTC,ETH", intervals="5s", backfill_hours="0")
    again.start()
    again.wait_ready()
    code, output = again.stop()
    assert code == 0, output[-2000:]


def test_stale_pid_file_and_socket_do_not_block_a_start(exchange, tmp_path):
    pipeline = Pipeline(exchange, tmp_path, coins="BTC", intervals="5s", backfill_hours="0")
    pipeline.run_dir.mkdir(parents=True, mode=0o700)
    (pipeline.run_dir / "supervisord.pid").write_text("999999\n")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(pipeline.run_dir / "supervisor.sock"))
    stale.close()  # a socket file nobody listens on, as a crash leaves it

    pipeline.start()
    pipeline.wait_ready()
    code, output = pipeline.stop()
    assert code == 0, output[-2000:]
    assert "removed stale supervisor.sock" in output


def test_second_instance_is_named_with_the_command_that_stops_it(exchange, tmp_path):
    pipeline = Pipeline(exchange, tmp_path, coins="BTC", intervals="5s", backfill_hours="0")
    pipeline.start()
    try:
        pipeline.wait_ready()
        result = _cli(pipeline, "run")
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-2000:]
    assert result.returncode == 78
    assert f"already running with run dir {pipeline.run_dir}" in result.stderr
    assert "hlstream stop --run-dir" in result.stderr


def test_second_writer_on_one_data_dir_exits_78_naming_the_first(exchange, tmp_path):
    first = Pipeline(exchange, tmp_path / "a", coins="BTC", intervals="5s", backfill_hours="0")
    first.start()
    try:
        first.wait_ready()
        wait_for(lambda: first.status("writer"), 20, "first writer serving")
        env = dict(first.env, HLSTREAM_RUN_DIR=str(tmp_path / "b" / "run"))
        second = subprocess.run(
            [sys.executable, "-m", "hlstream.services.writer"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        code, output = first.stop()
    assert code == 0, output[-2000:]
    assert second.returncode == 78, second.stderr[-2000:]
    assert f"already written by another hlstream writer (run dir {first.run_dir}" in second.stderr


def test_make_run_stops_on_one_group_sigterm(exchange, tmp_path):
    pipeline = Pipeline(exchange, tmp_path, coins="BTC", intervals="5s", backfill_hours="0")
    with pipeline.output_path.open("wb") as out:
        make = subprocess.Popen(
            ["make", "-s", "--no-print-directory", "-C", str(ROOT), "run"],
            env=pipeline.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        pipeline.wait_ready(timeout_s=120)  # the first make may install the venv
    except AssertionError:
        make.kill()
        raise
    os.killpg(make.pid, signal.SIGTERM)
    sent = time.monotonic()
    try:
        make.wait(timeout=5)
    except subprocess.TimeoutExpired:
        make.kill()
        raise AssertionError(f"make run running 5 s after SIGTERM:\n{pipeline.output()}") from None
    left_s = max(0.5, 5 - (time.monotonic() - sent))
    wait_for(lambda: not pids_with_run_dir(pipeline.run_dir), left_s, "every stage stopped")


def test_tap_says_why_nothing_arrives_when_no_pipeline_runs(tmp_path):
    env = dict(os.environ, HLSTREAM_RUN_DIR=str(tmp_path / "nowhere"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "tap", "trades"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 15
    assert "cannot tap" in result.stderr and "does not exist" in result.stderr


def test_tap_reports_a_stale_socket(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run_dir / "trades.sock"))
    stale.close()
    env = dict(os.environ, HLSTREAM_RUN_DIR=str(run_dir))
    result = subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "tap", "trades"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "stale socket" in result.stderr


def test_stop_returns_once_everything_is_gone_so_start_works_at_once(exchange, tmp_path):
    pipeline = Pipeline(exchange, tmp_path, coins="BTC", intervals="5s", backfill_hours="0")
    started = _cli(pipeline, "start")
    try:
        assert started.returncode == 0, started.stderr
        assert "started ingest, aggregator, writer under supervisord (pid " in started.stdout
        assert f"data in {pipeline.data_dir}" in started.stdout
        pipeline.wait_ready()

        stopped = _cli(pipeline, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not pids_with_run_dir(pipeline.run_dir), "stop returned before every process ended"
        again = _cli(pipeline, "start")
        assert again.returncode == 0, again.stderr
    finally:
        final = _cli(pipeline, "stop")
    assert final.returncode == 0 and "stopped" in final.stdout, final.stderr
    assert not pids_with_run_dir(pipeline.run_dir)


def test_supervisord_startsecs_is_the_one_stages_outlive_on_a_config_error():
    conf = (ROOT / "supervisord.conf").read_text()
    values = {
        float(line.split("=", 1)[1]) for line in conf.splitlines() if line.startswith("startsecs=")
    }
    assert values == {SUPERVISOR_STARTSECS}


def test_a_supervised_stage_with_a_config_error_exits_78_after_startsecs():
    body = (
        "from hlstream.common.errors import ConfigError\n"
        "from hlstream.common.lifecycle_io import run_main\n"
        "from hlstream.common.log import EventLog\n"
        "def fail():\n"
        "    raise ConfigError('bad setting')\n"
        "run_main(EventLog('writer'), fail)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", body],
        env=dict(os.environ, SUPERVISOR_ENABLED="1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 78 and "bad setting" in result.stderr
    assert time.monotonic() - started > SUPERVISOR_STARTSECS, "supervisord would restart it"


def test_a_stage_config_error_is_the_last_line_of_run_and_is_not_retried(exchange, tmp_path):
    first = Pipeline(exchange, tmp_path / "a", coins="BTC", intervals="5s", backfill_hours="0")
    first.start()
    try:
        first.wait_ready()
        wait_for(lambda: first.status("writer"), 20, "first writer serving")
        second = Pipeline(exchange, tmp_path / "b", coins="BTC", intervals="5s", backfill_hours="0")
        second.env["HLSTREAM_DATA_DIR"] = str(first.data_dir)  # one data dir, two run dirs
        result = second.cli("run", timeout_s=60)
    finally:
        code, output = first.stop()
    assert code == 0, output[-2000:]
    assert result.returncode == 78, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("hlstream: error: ") and "another" in last, result.stderr
    spawned = (second.run_dir / "logs" / "supervisord.log").read_text()
    for stage in ("ingest", "writer"):
        assert spawned.count(f"spawned: '{stage}'") == 1, spawned
