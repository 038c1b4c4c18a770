"""Stopping a subprocess in tests: SIGTERM (or another signal), then SIGKILL if it overstays."""

from __future__ import annotations

import signal
import subprocess
from typing import AnyStr


def terminate(
    proc: subprocess.Popen[AnyStr], timeout_s: float = 10.0, sig: int = signal.SIGTERM
) -> tuple[int, AnyStr, bool]:
    """Send `proc` `sig`, SIGKILL it if it overstays `timeout_s`; return (exit code, its stderr,
    whether it stopped in time)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
        stopped = True
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        stopped = False
    return proc.returncode, stderr, stopped
