"""Stopping a stage subprocess in tests: SIGTERM, then SIGKILL if it overstays."""

from __future__ import annotations

import signal
import subprocess
from typing import AnyStr


def terminate(proc: subprocess.Popen[AnyStr], timeout_s: float = 10.0) -> tuple[int, AnyStr, bool]:
    """SIGTERM `proc`; return (exit code, its stderr, whether it stopped within `timeout_s`)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
        stopped = True
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        stopped = False
    return proc.returncode, stderr, stopped
