"""Intervals and windows in epoch ms (UTC), aligned to the epoch like the exchange's candles:
`bucket_start(t) <= t < bucket_start(t) + interval_ms`."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hlstream.common.errors import ConfigError

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_INTERVAL_RE = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
# Intervals the exchange serves through candleSnapshot (seconds intervals have none).
REST_INTERVALS = frozenset({"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "8h", "12h", "1d"})
MAX_INTERVAL_MS = 7 * 86_400_000


def parse_interval(text: str) -> int:
    """Return the length in ms of an interval such as `5s`, `1m`, `4h`, `1d`."""
    match = _INTERVAL_RE.match(text.strip())
    if match is None:
        raise ConfigError(
            f"unknown interval {text!r}: use N followed by s, m, h or d (e.g. 5s, 1m, 30m, 1h, 1d)"
        )
    interval_ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if interval_ms > MAX_INTERVAL_MS:
        raise ConfigError(f"interval {text!r} is longer than 7 days")
    if 86_400_000 % interval_ms != 0 and interval_ms % 86_400_000 != 0:
        raise ConfigError(
            f"interval {text!r} does not divide a day evenly, so windows would drift against UTC"
        )
    return interval_ms


def has_rest_candles(interval: str) -> bool:
    return interval in REST_INTERVALS


def bucket_start(ts_ms: int, interval_ms: int) -> int:
    return ts_ms - ts_ms % interval_ms


def normalize_ts_ms(value: object) -> int | None:
    """Read an exchange time as epoch ms; values below 1e12 are seconds. None if unusable."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not number > 0 or number != number or number > 1e15:
        return None
    if number < 1e12:
        number *= 1000
    return int(number)


def format_window(ts_ms: int) -> str:
    """The CSV `Datetime` of a window start: `%Y-%m-%d %H:%M:%S` in UTC."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_window(text: str) -> int:
    """Inverse of `format_window`."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000
