"""`hlstream demo`: the fake exchange (`python -m hlstream.sim`) plus the pipeline, no internet.

Every run starts from empty demo dirs: the simulator makes up a new price history each time,
and files of an earlier run would mix two histories. Only a dir the demo made (it holds
DEMO_MARKER) or the default one is emptied; any other dir that holds files is refused.
"""

from __future__ import annotations

import argparse
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from hlstream.common.config import Settings, prepare_dirs
from hlstream.common.errors import ConfigError
from hlstream.common.lifecycle_io import pdeathsig_preexec

DEMO_DEFAULTS = {
    "coins": "BTC,ETH,SOL",
    "intervals": "5s,1m",
    "data_dir": "./demo-data",
    "run_dir": "./demo-run",
    "backfill_hours": "1",
    "audit_settle_seconds": "5",  # the simulator serves each candle whole when it ends
}
SIM_START_TIMEOUT_S = 15.0
SIM_POLL_S = 0.2
SIM_STOP_TIMEOUT_S = 10.0  # then SIGKILL
DEMO_MARKER = ".hlstream-demo"  # in a dir the demo made, so a later run may empty it


def apply_demo_defaults(args: argparse.Namespace, **fixed: str) -> None:
    """The demo's settings where no flag gives one; `fixed` ones (the simulator's URLs) always."""
    for name, value in {**DEMO_DEFAULTS, **fixed}.items():
        if name in fixed or getattr(args, f"cfg_{name}", None) is None:
            setattr(args, f"cfg_{name}", value)


def reset_demo_dirs(settings: Settings) -> None:
    """Empty the demo's data and run dirs (no pipeline runs on them) and mark them the demo's."""
    defaults = {Path(DEMO_DEFAULTS[name]).resolve() for name in ("data_dir", "run_dir")}
    for name, path in (("data_dir", settings.data_dir), ("run_dir", settings.run_dir)):
        if not path.is_dir():
            continue
        if path not in defaults and not (path / DEMO_MARKER).exists() and any(path.iterdir()):
            raise ConfigError(
                f"setting {name}: {path} holds files the demo did not write; the demo starts "
                "from an empty dir, so give it a new one"
            )
        shutil.rmtree(path)
    prepare_dirs(settings)
    for path in (settings.data_dir, settings.run_dir):
        (path / DEMO_MARKER).write_text("made by `hlstream demo`, which empties it on every run\n")


def parse_sim_banner(line: str) -> tuple[str, str]:
    """(ws_url, info_url) from the simulator's `ws_url=... info_url=...` line."""
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    if "ws_url" not in fields or "info_url" not in fields:
        raise ConfigError(f"the simulator printed {line.strip()!r}, expected ws_url= info_url=")
    return fields["ws_url"], fields["info_url"]


def start_sim(coins: str, rate: float) -> tuple[subprocess.Popen[str], str, str]:
    """Start `python -m hlstream.sim`; return it with its websocket and /info URLs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hlstream.sim", "--coins", coins, "--rate", str(rate)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=pdeathsig_preexec(),  # dies with us, even on SIGKILL
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + SIM_START_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], SIM_POLL_S)
        line = proc.stdout.readline() if ready else ""
        if line:
            return (proc, *parse_sim_banner(line))
        if proc.poll() is not None:
            break
    stop_sim(proc)
    raise ConfigError("the fake exchange (python -m hlstream.sim) did not start")


def stop_sim(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the simulator and wait (SIGKILL after SIM_STOP_TIMEOUT_S)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=SIM_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
