"""The venue audit's REST weight per hour at steady state: the oracle the budget tests hold
the live auditor to (docs/audit.md)."""

from __future__ import annotations

from hlstream.services.writer.audit import audit_period_s
from hlstream.services.writer.core import candle_weight


def weight_per_hour(series: int, share: float, settle_s: float, interval_ms: int) -> float:
    """REST weight per hour for `series` (coin, interval) pairs of one interval."""
    period_s = audit_period_s(series, share, settle_s, interval_ms)
    candles = round(period_s * 1000 / interval_ms)
    return series * (3600.0 / period_s) * candle_weight(candles)
