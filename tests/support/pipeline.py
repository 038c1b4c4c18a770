"""Run the whole pipeline (`hlstream run`: supervisord + three stages) against a FakeExchange.

Scenario code lives in the tests; this module only starts, waits and reads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from hlstream.common.filenames import csv_filename
from hlstream.common.status import StageStatus
from hlstream.common.status_io import read_status
from hlstream.common.timebucket import parse_window
from hlstream.sim.exchange import FakeExchange
from tests.support.wait import wait_for

HEADER = "Datetime,Open,High,Low,Close,Volume"
Row = tuple[int, str, str, str, str, str]


def read_rows(path: Path) -> list[Row]:
    """All data rows of a CSV file; asserts the exact header and whole lines. A file the writer
    has not created yet (it does so with the first row) has no rows."""
    if not path.exists():
        return []
    text = path.read_text()
    assert text.endswith("\n"), f"{path.name} has a torn last line"
    lines = text.splitlines()
    assert lines[0] == HEADER, f"{path.name} header is {lines[0]!r}"
    rows = []
    for line in lines[1:]:
        stamp, o, h, low, c, v = line.split(",")
        rows.append((parse_window(stamp), o, h, low, c, v))
    return rows


def assert_contiguous(rows: list[Row], interval_ms: int, name: str) -> None:
    """Strictly increasing, one row per window, no holes."""
    starts = [row[0] for row in rows]
    for before, after in zip(starts, starts[1:], strict=False):
        assert after - before == interval_ms, f"{name}: {before} -> {after} is not one window"


def pids_with_run_dir(run_dir: Path) -> list[int]:
    """Every live process whose environment names `run_dir` (supervisord, stages, orphans)."""
    needle = f"HLSTREAM_RUN_DIR={run_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


class Pipeline:
    """`hlstream run` in a subprocess with its own data and run dirs."""

    def __init__(self, exchange: FakeExchange, base: Path, **settings: str) -> None:
        self.exchange = exchange
        self.data_dir = base / "data"
        self.run_dir = base / "run"
        self.env = dict(os.environ)
        self.env.update(
            HLSTREAM_WS_URL=exchange.ws_url,
            HLSTREAM_INFO_URL=exchange.info_url,
            HLSTREAM_DATA_DIR=str(self.data_dir),
            HLSTREAM_RUN_DIR=str(self.run_dir),
            HLSTREAM_STALE_SECONDS="10",
            PYTHONUNBUFFERED="1",
        )
        self.env.update({f"HLSTREAM_{key.upper()}": value for key, value in settings.items()})
        self.proc: subprocess.Popen[bytes] | None = None
        self.output_path = base / "hlstream-run.out"

    def start(self, new_session: bool = False) -> Pipeline:
        """Start `hlstream run`; `new_session` makes it a process group of its own (a shell job)."""
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        with self.output_path.open("ab") as output:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hlstream.cli", "run"],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        return self

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def status(self, service: str) -> StageStatus | None:
        """The stage's last heartbeat (run_dir/{service}-status.json), typed."""
        return read_status(self.run_dir, service)

    def connected(self) -> bool:
        status = self.status("ingest")
        return bool(status and status.feed and status.feed.connected)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until ingest is connected and the aggregator has joined the bus."""
        wait_for(self.connected, timeout_s, "ingest connected")
        wait_for(lambda: self.status("aggregator"), timeout_s, "aggregator heartbeat")

    def csv(self, coin: str, interval: str) -> Path:
        return self.data_dir / csv_filename(coin, interval)

    def cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """`hlstream ARGS` against this pipeline's dirs and endpoints."""
        return subprocess.run(
            [sys.executable, "-m", "hlstream.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def supervisorctl(self, *args: str) -> str:
        conf = Path(__file__).resolve().parents[2] / "supervisord.conf"
        env = dict(self.env, HLSTREAM_RUN_DIR=str(self.run_dir.resolve()))
        env.setdefault("HLSTREAM_PYTHON", sys.executable)
        env.setdefault("HLSTREAM_RELAY", "false")
        env.setdefault("HLSTREAM_HOME", str(conf.parent))
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout + result.stderr

    def stop(self, timeout_s: float = 40.0) -> tuple[int, str]:
        """SIGTERM the front door; return its exit code and everything it printed."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"pipeline did not stop within {timeout_s}s:\n{self.output()}"
            ) from None
        return self.proc.returncode, self.output()
