"""Logging setup: one line per event, `event=name` first, then `key=value` fields.

Every line carries UTC time, level and `service`. `HLSTREAM_LOG_JSON=1` (setting
`log_json`) switches to one JSON object per line. Configure once per process with
`setup_logging`; get an `EventLog` with `event_log(service)`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_LOGGER_ROOT = "hlstream"


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' \t\n"='):
        return json.dumps(text)
    return text


class _EventFormatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}))
        event = getattr(record, "event", None) or "log"
        if not getattr(record, "fields", None) and event == "log":
            fields["msg"] = record.getMessage()
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            body = {"ts": self.formatTime(record), "level": record.levelname, "event": event}
            body.update({key: value for key, value in fields.items()})
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


class EventLog:
    """Structured event logger bound to one service name."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._logger = logging.getLogger(f"{_LOGGER_ROOT}.{service}")
        self._last_emit: dict[str, float] = {}

    def _emit(self, level: int, event: str, fields: dict[str, Any], exc: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        merged = {"service": self.service, **fields}
        self._logger.log(level, event, extra={"event": event, "fields": merged}, exc_info=exc)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields, exc=True)

    def warning_limited(self, key: str, every_s: float, event: str, **fields: Any) -> bool:
        """Log a WARNING at most once per `every_s` seconds for `key`; True if logged."""
        if not self._due(key, every_s):
            return False
        self.warning(event, **fields)
        return True

    def error_limited(self, key: str, every_s: float, event: str, **fields: Any) -> bool:
        """Log an ERROR at most once per `every_s` seconds for `key`; True if logged."""
        if not self._due(key, every_s):
            return False
        self.error(event, **fields)
        return True

    def _due(self, key: str, every_s: float) -> bool:
        now = time.monotonic()
        if now - self._last_emit.get(key, -1e18) < every_s:
            return False
        self._last_emit[key] = now
        return True


def event_log(service: str) -> EventLog:
    """An EventLog for `service` (ingest, aggregator, writer, cli, sim)."""
    return EventLog(service)
