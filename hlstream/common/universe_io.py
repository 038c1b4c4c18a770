"""The venue's coin lists over REST. `resolve_settings_coins` expands `coins = "all"` at
startup, retrying `meta` while the network is down; `precheck_coins` is the front door's one
quick look, so an unknown coin stops `hlstream run` before a stage creates a file for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TypeVar

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
T = TypeVar("T")


def fetch_listing(client: InfoClient, dexes: Iterable[str]) -> tuple[object, set[str]]:
    """(the `meta` answer, every name listed: perps, spot pairs and the builder `dexes`' perps)."""
    meta = client.post({"type": "meta"})
    spot = client.post({"type": "spotMeta"})
    dex_metas = {dex: client.post({"type": "meta", "dex": dex}) for dex in dexes}
    return meta, universe_names(meta, spot, dex_metas)


def retry_until_stopped(
    settings: Settings,
    fetch: Callable[[], T],
    log: EventLog,
    should_stop: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`fetch()` retried with the settings' backoff until it succeeds or `should_stop()` turns
    true (then TransientError); each failure is logged as `meta_unavailable`."""

    def on_retry(attempt: int, delay_s: float, exc: TransientError) -> None:
        delay_ms = int(delay_s * 1000)
        log.repeated(
            logging.WARNING, "meta_unavailable", str(exc), attempt=attempt, delay_ms=delay_ms
        )

    return call_with_retry(
        fetch,
        attempts=FOREVER,
        on_retry=on_retry,
        should_stop=should_stop,
        base_s=settings.backoff_base_seconds,
        cap_s=settings.backoff_cap_seconds,
        sleep=sleep,
    )


def precheck_coins(settings: Settings, client: InfoClient) -> str | None:
    """Check the configured coins against the listing once, without retrying: ConfigError
    names an unknown coin; returns None when checked (or no check is needed), else why not."""
    if not settings.validate_coins or wants_all(settings.coins):
        return None
    watched = settings.coins + settings.book_coins + settings.bbo_coins
    try:
        _, names = fetch_listing(client, dex_prefixes(watched))
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
    meta = retry_until_stopped(
        settings, lambda: info_client.post({"type": "meta"}), log, should_stop
    )
    resolved = validate(replace(settings, coins=resolve_coins(settings, meta)))
    log.info("coins_resolved", coins=len(resolved.coins), source="meta")
    return resolved
