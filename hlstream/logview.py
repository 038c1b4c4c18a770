"""What `hlstream run` makes of the stages' log lines (pure: text in, text out).

A stage logs one event per line, `... LEVEL event=NAME key=value ...` (values with spaces are
JSON strings) or one JSON object when `log_json` is on; both read the same here.
"""

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
