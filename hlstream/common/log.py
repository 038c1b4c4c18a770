"""Logging: one line per event, `event=name` then `key=value` fields (one JSON object per line
with `log_json`), each with UTC time, level and `service`. Call `setup_logging` once per process.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping

_LOGGER_ROOT = "hlstream"


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' \t\n"='):
        return json.dumps(text)
    return text


class _EventFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)  # UTC times such as 2024-03-01T12:00:00.123Z
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = dict(getattr(record, "fields", {}))
        event = getattr(record, "event", None) or "log"
        if not getattr(record, "fields", None) and event == "log":
            fields["msg"] = record.getMessage()
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            body = {"ts": self.formatTime(record), "level": record.levelname, "event": event}
            body.update(fields)
            return json.dumps(body, default=str)
        pairs = " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        return f"{self.formatTime(record)} {record.levelname} event={event} {pairs}".rstrip()


def setup_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Send hlstream events to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EventFormatter(as_json))
    root = logging.getLogger(_LOGGER_ROOT)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


REPEAT_EVERY_S = 60.0  # a failure that repeats while the network is down is logged...
REPEAT_BURST = 3  # ...this many times per window (one failed request's retries), then counted


class EventLog:
    def __init__(self, service: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.clock = clock  # monotonic seconds, for the rate limits
        self._logger = logging.getLogger(f"{_LOGGER_ROOT}.{service}")
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start, lines in it)
        self._suppressed: dict[str, int] = {}

    def _emit(
        self, level: int, event: str, fields: Mapping[str, object], exc: bool = False
    ) -> None:
        if not self._logger.isEnabledFor(level):
            return
        merged = {"service": self.service, **fields}
        self._logger.log(level, event, extra={"event": event, "fields": merged}, exc_info=exc)

    def debug(self, event: str, **fields: object) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: object) -> None:
        self._emit(logging.ERROR, event, fields, exc=True)

    def warning_limited(
        self, key: str, every_s: float, event: str, *, burst: int = 1, **fields: object
    ) -> bool:
        """Log a WARNING at most `burst` times per `every_s` seconds for `key`; True if logged.
        The first line after suppressed ones counts them in `suppressed=N`."""
        return self._limited(logging.WARNING, key, every_s, burst, event, fields)

    def error_limited(
        self, key: str, every_s: float, event: str, *, burst: int = 1, **fields: object
    ) -> bool:
        """`warning_limited` at ERROR."""
        return self._limited(logging.ERROR, key, every_s, burst, event, fields)

    def repeated(self, level: int, event: str, error: str, **fields: object) -> bool:
        """A failure that may repeat for as long as the network is down: each distinct error
        is logged `REPEAT_BURST` times per `REPEAT_EVERY_S`, the rest counted."""
        key = f"{event}|{error[:80]}"
        return self._limited(
            level, key, REPEAT_EVERY_S, REPEAT_BURST, event, {**fields, "error": error}
        )

    def _limited(
        self,
        level: int,
        key: str,
        every_s: float,
        burst: int,
        event: str,
        fields: Mapping[str, object],
    ) -> bool:
        now = self.clock()
        start, count = self._windows.get(key, (-1e18, 0))
        if now - start >= every_s:
            start, count = now, 0
        if count >= burst:
            self._windows[key] = (start, count)
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._windows[key] = (start, count + 1)
        suppressed = self._suppressed.pop(key, 0)
        emit = self.error if level >= logging.ERROR else self.warning  # subclasses see them
        emit(event, **({**fields, "suppressed": suppressed} if suppressed else fields))
        return True
