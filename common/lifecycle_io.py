"""Process lifecycle: SIGTERM/SIGINT set a stop flag so run loops finish cleanly (flush, fsync,
close sockets) and exit 0; the top-level runner maps errors to exit codes.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from common.errors import EXIT_CONFIG, EXIT_CRASH, EXIT_OK, ConfigError
from common.log import EventLog, setup_logging


class StopFlag:
    """Set by SIGTERM/SIGINT; run loops poll `is_set()` or wait on it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name = ""

    def install(self) -> StopFlag:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s)


def run_main(log: EventLog, body: Callable[[], None]) -> None:
    """Run a stage's main body and exit with the right code: 0, 1 (crash) or 78 (config)."""
    setup_logging()
    try:
        body()
    except ConfigError as exc:
        log.error("config_error", error=str(exc))
        sys.exit(EXIT_CONFIG)
    except KeyboardInterrupt:
        sys.exit(EXIT_OK)
    except Exception:  # top-level run loop: log and let supervisord restart us
        log.exception("crash")
        sys.exit(EXIT_CRASH)
    sys.exit(EXIT_OK)
