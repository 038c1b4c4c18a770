"""`hlstream demo`: fake exchange + pipeline with no internet; 5s rows appear; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from hlstream.common.config import load_settings
from hlstream.supervise_io import is_running
from tests.integration.harness import read_rows, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_demo_writes_5s_bars_and_stops_cleanly_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HLSTREAM_")}
    env["PYTHONPATH"] = str(ROOT)
    output = (tmp_path / "demo.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hlstream.cli", "demo"],
        cwd=tmp_path,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    csv = tmp_path / "demo-data" / "btc_5s_data.csv"
    try:
        wait_for(lambda: csv.exists() and read_rows(csv), 20, "a 5s row in ./demo-data")
        assert read_rows(tmp_path / "demo-data" / "btc_1m_data.csv"), "1m history backfilled"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        output.close()
    text = (tmp_path / "demo.out").read_text(errors="replace")
    assert code == 0, text[-3000:]
    assert "fake exchange at ws://127.0.0.1:" in text
    demo_run = load_settings(environ={"HLSTREAM_RUN_DIR": str(tmp_path / "demo-run")})
    assert not is_running(demo_run), "supervisord still answers on the demo's socket"
    assert "python -m hlstream.sim" not in _processes_in(tmp_path)


def test_restart_and_stop_find_the_running_demo(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HLSTREAM_")}
    env["PYTHONPATH"] = str(ROOT)
    output = (tmp_path / "demo.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hlstream.cli", "demo"],
        cwd=tmp_path,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def hlstream(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hlstream.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        status = tmp_path / "demo-run" / "writer-status.json"
        wait_for(status.exists, 20, "the demo's writer status")
        restarted = hlstream("restart", "writer")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert "using the running demo" in restarted.stderr
        stopped = hlstream("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        code = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        output.close()
    assert code == 0, (tmp_path / "demo.out").read_text(errors="replace")[-3000:]
    assert "python -m hlstream.sim" not in _processes_in(tmp_path)


def _processes_in(tmp_path: Path) -> str:
    """Command lines of processes whose working directory is tmp_path (the demo's sim)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cwd").resolve() == tmp_path.resolve():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return "\n".join(found)
