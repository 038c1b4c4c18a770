"""Process lifecycle: signals become a stop flag; the top-level runner maps errors to exit codes.
A signal handler only stores attributes and writes one byte to a non-blocking self-pipe (no
lock, no logging, so a second signal can never deadlock); the pipe stays readable once set.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from pathlib import Path
from types import FrameType
from typing import TypeVar

from hlstream.common.errors import EXIT_CONFIG, EXIT_CRASH, EXIT_OK, ConfigError
from hlstream.common.log import EventLog, setup_logging

_T = TypeVar("_T")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1
# supervisord.conf's `startsecs`: supervisord restarts a process that exits sooner whatever
# its exit code, so a stage leaving on a configuration error (78) first lives this long.
SUPERVISOR_STARTSECS = 1.0
CONFIG_EXIT_MARGIN_S = 0.3  # and a margin for supervisord's reaping tick
STOP_POLL_S = 0.05  # how soon `call_until_stopped` notices the stop flag


class StopFlag:
    """Set by SIGTERM/SIGINT (or `set()`); run loops poll `is_set()` or block in `wait()`."""

    def __init__(self) -> None:
        self._set = False
        self._read_fd, self._write_fd = os.pipe()  # not inherited by children (PEP 446)
        os.set_blocking(self._write_fd, False)
        self.signal_name = ""
        self.signals = 0

    def install(self) -> StopFlag:
        """Route SIGTERM and SIGINT to this flag (main thread only)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # Async-signal-safe on purpose: attribute stores and one non-blocking write.
        self.signals += 1
        if not self.signal_name:
            self.signal_name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
        self.set()

    def set(self) -> None:
        """Stop from code (a fatal condition), exactly as a signal would."""
        self._set = True
        try:  # noqa: SIM105 - no context manager objects inside a signal handler
            os.write(self._write_fd, b"\0")
        except OSError:  # pipe full (a signal storm): it is readable already
            pass

    def is_set(self) -> bool:
        return self._set

    def fileno(self) -> int:
        """A descriptor that becomes readable, and stays readable, once the flag is set."""
        return self._read_fd

    def wait(self, timeout_s: float) -> bool:
        """Block up to `timeout_s` or until the flag is set; return whether it is set."""
        if self._set:
            return True
        poller = select.poll()
        poller.register(self._read_fd, select.POLLIN)
        poller.poll(max(0, int(timeout_s * 1000)))
        return self._set


# Loaded before any fork: a `preexec_fn` runs between fork and exec, where loading is unsafe.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with(parent_pid: int) -> None:
    """Have Linux SIGTERM this process when its parent `parent_pid` dies (else a no-op)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)


def pdeathsig_preexec() -> Callable[[], None]:
    """A `preexec_fn` for Popen: the child gets SIGTERM when this process dies."""
    parent_pid = os.getpid()
    return lambda: _die_with(parent_pid)


def guard_supervised_stage() -> None:
    """Under supervisord, exit with it: a SIGKILLed supervisord must not orphan a stage."""
    if os.environ.get("SUPERVISOR_ENABLED"):
        _die_with(os.getppid())


def ignore_stop_signals() -> None:
    """On the way out: later SIGINT/SIGTERM are ignored, so they cannot change the exit code
    (Python resets its own handlers to SIG_DFL while it finalizes; SIG_IGN is left alone)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def run_main(log: EventLog, body: Callable[[], None]) -> None:
    """Run a stage's main body and exit with the right code: 0, 1 (crash) or 78 (config)."""
    setup_logging()
    code = EXIT_OK
    try:
        body()
    except ConfigError as exc:
        log.error("config_error", error=str(exc))
        code = EXIT_CONFIG
        if os.environ.get("SUPERVISOR_ENABLED"):
            _outlive_startsecs()
    except KeyboardInterrupt:
        code = EXIT_OK
    except Exception:  # top-level run loop: log and let supervisord restart us
        log.exception("crash")
        code = EXIT_CRASH
    ignore_stop_signals()
    sys.exit(code)


def process_age_s() -> float:
    """Seconds since this process was forked (Linux /proc; 0.0 elsewhere)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return 0.0
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
    return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")


def _outlive_startsecs() -> None:
    """Sleep until supervisord sees an exit after `startsecs`: an expected one, not restarted."""
    time.sleep(max(0.0, SUPERVISOR_STARTSECS + CONFIG_EXIT_MARGIN_S - process_age_s()))


class StopRequestedError(Exception):
    """The stop flag was set while `call_until_stopped` waited for a blocking call."""


def call_until_stopped(stop: StopFlag, call: Callable[[], _T]) -> _T:
    """Run a blocking call (an HTTP request) in a worker thread; raise StopRequestedError on
    stop (the abandoned daemon thread dies with the process)."""
    future: Future[_T] = Future()

    def worker() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # handed back to the caller's thread by `result()`
            future.set_exception(exc)

    threading.Thread(target=worker, name="blocking-call", daemon=True).start()
    while not wait([future], STOP_POLL_S).done:
        if stop.is_set():
            raise StopRequestedError()
    return future.result()
