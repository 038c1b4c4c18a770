"""What `hlstream run` makes of the stages' log lines (pure: text in, text out); key=value
lines and JSON lines (`log_json`) read the same."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_LEVEL = re.compile(r"^\S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) event=")


def parse_line(line: str) -> tuple[str, str, dict[str, str]]:
    """(level, event, fields) of one stage log line; ("", "", {}) for anything else."""
    text = line.strip()
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except ValueError:
            return "", "", {}
        if not isinstance(body, dict):
            return "", "", {}
        fields = {str(key): str(value) for key, value in body.items()}
        return fields.pop("level", ""), fields.pop("event", ""), fields
    level = _LEVEL.match(text)
    if level is None:
        return "", "", {}
    fields = {}
    for key, raw in _PAIR.findall(text[level.end() - len("event=") :]):
        fields[key] = json.loads(raw) if raw.startswith('"') else raw
    return level.group(1), fields.pop("event", ""), fields


def config_error(lines: Iterable[str]) -> str | None:
    """The error of the last `config_error` event among `lines`, if any."""
    found = None
    for line in lines:
        _level, event, fields = parse_line(line)
        if event == "config_error":
            found = fields.get("error", "")
    return found


# Retry events of the stages; with one of these words in `error` or `reason` they mean the
# exchange cannot be reached at all (no network, wrong URL), not that it answered badly.
_RETRY_EVENTS = frozenset(
    {"meta_unavailable", "rest_retry", "rest_failed", "backfill_failed", "ws_reconnect"}
    | {"listing_unavailable"}
)
_UNREACHABLE = (
    "unreachable",
    "timed out",
    "connect_failed",
    "ConnectionRefused",
    "ConnectionError",
)
# What follows from being offline and says nothing new while it lasts.
_OFFLINE_ECHOES = frozenset({"feed_not_covered", "backfill_beyond_reach"})
# Events that only happen once the exchange answered.
_ONLINE_EVENTS = frozenset({"ws_connected", "coins_validated", "coins_resolved", "backfill_done"})
STILL_OFFLINE_EVERY_S = 600.0


def is_unreachable(event: str, fields: dict[str, str]) -> bool:
    """True for a retry event whose cause is that the exchange could not be reached."""
    cause = fields.get("error", "") + " " + fields.get("reason", "")
    return event in _RETRY_EVENTS and any(word in cause for word in _UNREACHABLE)


class Echo:
    """The stage log lines `hlstream run` shows: all but `config`, and while the exchange
    cannot be reached one note (every STILL_OFFLINE_EVERY_S) instead of every retry."""

    def __init__(self, logs: str) -> None:
        self.logs = logs
        self.offline_since_s: float | None = None
        self.noted_s = 0.0
        self.hidden = 0

    def feed(self, stage: str, line: str, now_s: float) -> list[str]:
        """The lines to print for one stage log line."""
        _level, event, fields = parse_line(line)
        shown = f"{stage:<10} | {line}"
        if event == "config":
            return []
        if is_unreachable(event, fields) or (
            self.offline_since_s is not None and event in _OFFLINE_ECHOES
        ):
            self.hidden += 1
            if self.offline_since_s is None:
                self.offline_since_s = self.noted_s = now_s
                return [self._offline_note(fields.get("error") or fields.get("reason", ""))]
            if now_s - self.noted_s >= STILL_OFFLINE_EVERY_S:
                self.noted_s = now_s
                minutes = int((now_s - self.offline_since_s) // 60)
                return [
                    f"hlstream: still cannot reach the exchange after {minutes} min "
                    f"({self.hidden} retries logged in {self.logs})"
                ]
            return []
        if self.offline_since_s is not None and event in _ONLINE_EVENTS:
            self.offline_since_s = None
            return ["hlstream: the exchange answers; streaming", shown]
        return [shown]

    def _offline_note(self, error: str) -> str:
        return (
            f"hlstream: cannot reach the exchange ({error}); the stages retry with backoff, "
            f"quietly (each retry is logged in {self.logs}). No internet? `make demo` runs "
            "the pipeline against a local fake exchange"
        )
