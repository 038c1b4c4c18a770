"""The venue's coin lists over REST. `resolve_settings_coins` expands `coins = "all"` at
startup, retrying `meta` while the network is down; `precheck_coins` is the front door's one
quick look, so an unknown coin stops `hlstream run` before a stage creates a file for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from hlstream.common.config import Settings, validate
from hlstream.common.errors import ProtocolError, TransientError
from hlstream.common.log import EventLog
from hlstream.common.rest_io import FOREVER, InfoClient, call_with_retry
from hlstream.common.universe import (
    check_coins,
    dex_prefixes,
    resolve_coins,
    universe_names,
    wants_all,
)

PRECHECK_TIMEOUT_S = 5.0


def precheck_coins(settings: Settings, client: InfoClient) -> str | None:
    """Check the configured coins against the listing once, without retrying: ConfigError
    names an unknown coin; returns None when checked (or no check is needed), else why not."""
    if not settings.validate_coins or wants_all(settings.coins):
        return None
    watched = settings.coins + settings.book_coins + settings.bbo_coins
    try:
        meta = client.post({"type": "meta"})
        spot = client.post({"type": "spotMeta"})
        dexes = {dex: client.post({"type": "meta", "dex": dex}) for dex in dex_prefixes(watched)}
        names = universe_names(meta, spot, dexes)
    except (TransientError, ProtocolError) as exc:
        return str(exc)
    check_coins(watched, names)
    return None


def resolve_settings_coins(
    settings: Settings,
    info_client: InfoClient,
    *,
    log: EventLog,
    should_stop: Callable[[], bool] = lambda: False,
) -> Settings:
    """`settings` with `coins = "all"` replaced by every listed perp (validated again).
    Retries until it succeeds or `should_stop()` turns true (then TransientError)."""
    if not wants_all(settings.coins):
        return settings

    def on_retry(attempt: int, delay_s: float, exc: TransientError) -> None:
        delay_ms = int(delay_s * 1000)
        log.repeated(
            logging.WARNING, "meta_unavailable", str(exc), attempt=attempt, delay_ms=delay_ms
        )

    meta = call_with_retry(
        lambda: info_client.post({"type": "meta"}),
        attempts=FOREVER,
        on_retry=on_retry,
        should_stop=should_stop,
        base_s=settings.backoff_base_seconds,
        cap_s=settings.backoff_cap_seconds,
    )
    resolved = validate(replace(settings, coins=resolve_coins(settings, meta)))
    log.info("coins_resolved", coins=len(resolved.coins), source="meta")
    return resolved
