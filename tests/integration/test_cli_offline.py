"""`hlstream verify` and `status` without a running pipeline, and `hlstream run` offline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

from hlstream.common.log import REPEAT_BURST
from hlstream.common.status_io import read_status
from tests.support.wait import wait_for

HEADER = "Datetime,Open,High,Low,Close,Volume\n"
ROWS = [
    "2024-01-01 00:00:00,100.0,101.5,99.5,101.0,3.25\n",
    "2024-01-01 00:01:00,101.0,101.0,101.0,101.0,0.0\n",
    "2024-01-01 00:02:00,101.0,102.0,100.0,100.5,1.0\n",
]


def hlstream(tmp_path, *args):
    env = dict(
        os.environ, HLSTREAM_DATA_DIR=str(tmp_path / "data"), HLSTREAM_RUN_DIR=str(tmp_path / "run")
    )
    return subprocess.run(
        [sys.executable, "-m", "hlstream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_verify_passes_clean_files_and_flags_each_corrupt_one(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "btc_1m_data.csv").write_text(HEADER + "".join(ROWS))
    (data / "eth_1m_data.csv").write_text(HEADER + ROWS[0] + ROWS[2])  # hole
    (data / "sol_1m_data.csv").write_text(HEADER + "".join(ROWS) + ROWS[2][:20])  # torn
    (data / "xrp_1m_data.csv").write_text(HEADER + ROWS[0] + ROWS[0])  # duplicate

    clean = hlstream(tmp_path, "verify", str(data / "btc_1m_data.csv"))
    assert clean.returncode == 0 and clean.stdout == ""

    result = hlstream(tmp_path, "verify")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["hole", "torn", "duplicate"]
    assert lines[0].startswith(f"{data / 'eth_1m_data.csv'}:3: hole:")
    assert "4 files" in result.stderr and "3 defects" in result.stderr


def test_verify_with_nothing_to_verify_fails_in_one_line(tmp_path):
    result = hlstream(tmp_path, "verify")
    assert result.returncode == 1
    assert result.stderr == f"hlstream verify: no *_data.csv files in {tmp_path / 'data'}\n"


def test_status_without_supervisord_exits_1(tmp_path):
    result = hlstream(tmp_path, "status", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["healthy"] and not report["supervisord"]
    assert report["problems"][0].startswith("supervisord is not running")


def test_bad_metrics_port_is_a_config_error(tmp_path):
    result = hlstream(tmp_path, "status", "--metrics-port", "70000")
    assert result.returncode == 78 and "metrics_port" in result.stderr


def test_metrics_on_a_taken_port_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hlstream(tmp_path, "metrics", "--metrics-port", str(port))
    assert result.returncode == 78, result.stderr
    assert f"setting metrics_port: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_metrics_serves_until_sigterm(tmp_path):
    port = _closed_port()
    env = dict(os.environ, HLSTREAM_RUN_DIR=str(tmp_path / "run"), PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "hlstream.cli", "metrics", "--metrics-port", str(port)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"hlstream: metrics on http://127.0.0.1:{port}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            assert "hlstream_supervisord_up 0.0" in page.read().decode()  # nothing runs here
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def _closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_offline_says_so_once_and_retries_quietly(tmp_path):
    port = _closed_port()
    env = dict(
        os.environ,
        HLSTREAM_DATA_DIR=str(tmp_path / "data"),
        HLSTREAM_RUN_DIR=str(tmp_path / "run"),
        HLSTREAM_WS_URL=f"ws://127.0.0.1:{port}/ws",
        HLSTREAM_INFO_URL=f"http://127.0.0.1:{port}/info",
        HLSTREAM_COINS="BTC,ETH",
        HLSTREAM_INTERVALS="1m",
        PYTHONUNBUFFERED="1",
    )
    out_path = tmp_path / "run.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hlstream.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run_dir = tmp_path / "run"

    def failures(stage: str) -> int:
        status = read_status(run_dir, stage)
        return status.rest.failures if status is not None and status.rest is not None else 0

    try:
        # Both stages have failed more requests than they log in a window by now.
        wait_for(
            lambda: failures("writer") > 2 * REPEAT_BURST and failures("ingest") > REPEAT_BURST,
            40,
            "the stages retrying against the closed port",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    output = out_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    noisy = [line for line in output.splitlines() if " WARNING " in line or " ERROR " in line]
    assert len(noisy) <= 1, "\n".join(noisy)
    assert output.count("event=config ") == 0 and output.count("hlstream: running ") == 1
    assert output.count("cannot reach the exchange") == 1
    note = next(line for line in output.splitlines() if "cannot reach the exchange" in line)
    assert "`make demo`" in note
    assert "CRIT" not in output, "supervisord's own lines belong in its log"
    assert len(output.splitlines()) <= 25, output
    for stage in ("ingest", "writer"):  # the stage logs back off quietly too
        log = (run_dir / "logs" / f"{stage}.log").read_text()
        loud = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
        assert len(loud) <= 3 * REPEAT_BURST, f"{stage}.log:\n" + "\n".join(loud)
