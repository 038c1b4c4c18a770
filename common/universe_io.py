"""Expand `coins = "all"` at startup: one `meta` request, retried with backoff while the
network is down (DESIGN.md: startup must survive an outage), then `common.universe`.

Call it right after `load_settings` in each stage's `__main__`; it returns the settings
unchanged, without any request, when the coin list is concrete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from hlstream.common.config import Settings, validate
from hlstream.common.errors import TransientError
from hlstream.common.log import EventLog
from hlstream.common.rest_io import FOREVER, InfoClient, call_with_retry
from hlstream.common.universe import resolve_coins, wants_all


def resolve_settings_coins(
    settings: Settings,
    info_client: InfoClient,
    *,
    log: EventLog | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    attempts: int = FOREVER,
) -> Settings:
    """`settings` with `coins = "all"` replaced by every listed perp (validated again).

    Raises TransientError when `attempts` run out or `should_stop()` turns true, ProtocolError
    on a malformed meta answer, ConfigError if the expanded list is invalid.
    """
    if not wants_all(settings.coins):
        return settings

    def on_retry(attempt: int, delay_s: float, exc: TransientError) -> None:
        if log is not None:
            log.warning(
                "meta_unavailable", attempt=attempt, delay_ms=int(delay_s * 1000), error=str(exc)
            )

    meta = call_with_retry(
        lambda: info_client.post({"type": "meta"}),
        attempts=attempts,
        on_retry=on_retry,
        should_stop=should_stop,
        base_s=settings.backoff_base_seconds,
        cap_s=settings.backoff_cap_seconds,
    )
    resolved = validate(replace(settings, coins=resolve_coins(settings, meta)))
    if log is not None:
        log.info("coins_resolved", coins=len(resolved.coins), source="meta")
    return resolved
