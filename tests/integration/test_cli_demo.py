"""`hlstream demo`: fake exchange + pipeline with no internet; 5s rows appear; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hlstream.common.config import load_settings
from hlstream.supervise_io import is_running
from tests.support.pipeline import read_rows
from tests.support.wait import wait_for

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
    assert "hlstream: stopping: ingest, then the aggregator, then the writer" in text
    assert text.rstrip().endswith(f"hlstream: stopped (exit 0); data in {tmp_path / 'demo-data'}")
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


def _demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HLSTREAM_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _tape_trades(data: Path) -> list[str]:
    lines = []
    for segment in sorted((data / "tape").rglob("*.csv")):
        lines += [line for line in segment.read_text().splitlines() if line.startswith("T,")]
    return lines


def _demo_until(tmp_path: Path, done: Callable[[], object], what: str) -> str:
    """Run `hlstream demo` in tmp_path until `done()`, stop it with Ctrl-C; its output."""
    out_path = tmp_path / "demo.out"
    with out_path.open("wb") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hlstream.cli", "demo"],
            cwd=tmp_path,
            env=_demo_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(done, 20, what)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    text = out_path.read_text(errors="replace")
    assert code == 0, text[-3000:]
    return text


def test_a_second_demo_starts_from_empty_dirs_and_keeps_one_history(tmp_path):
    data = tmp_path / "demo-data"
    _demo_until(tmp_path, lambda: _tape_trades(data), "the first demo's trades on the tape")
    first = set(_tape_trades(data))
    (data / "btc_1m_data.csv").write_text("Datetime,Open,High,Low,Close,Volume\n")  # stale row

    text = _demo_until(
        tmp_path,
        lambda: (
            (data / "btc_5s_data.csv").exists() and len(read_rows(data / "btc_5s_data.csv")) >= 2
        ),
        "two 5s rows of the second demo",
    )
    second = _tape_trades(data)
    assert second and not first & set(second), "the tape mixes the two runs' histories"
    assert f"starting from empty {data} and {tmp_path / 'demo-run'}" in text
    assert read_rows(data / "btc_1m_data.csv"), "the 1m file was made again from this history"
    for interval in ("5s", "1m"):
        check = subprocess.run(
            [sys.executable, "-m", "hlstream.cli", "rebuild", "--interval", interval, "--check"]
            + ["--data-dir", str(data), "--run-dir", str(tmp_path / "demo-run")]
            + ["--coins", "BTC,ETH,SOL"],
            env=_demo_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_the_demo_refuses_to_empty_a_dir_it_did_not_make(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "btc_1m_data.csv").write_text("precious\n")
    result = subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "demo", "--data-dir", str(mine)],
        cwd=tmp_path,
        env=_demo_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78
    assert "holds files the demo did not write" in result.stderr
    assert (mine / "btc_1m_data.csv").read_text() == "precious\n"


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
