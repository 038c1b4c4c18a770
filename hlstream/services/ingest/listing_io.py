"""The exchange's listing (meta, spotMeta, builder-dex metas): every coin checked on start
(retried while the exchange is unreachable or garbled, heartbeats going on), and re-read by a
link the venue closed right after a subscribe (the sign of a delisted coin). Links closing
together share one fetch no older than their close, and such re-fetches are at least
LISTING_MIN_INTERVAL_S apart: a server closing us for another reason cannot burn the REST budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hlstream.common.clock import Clock
from hlstream.common.config import Settings, validate
from hlstream.common.errors import ProtocolError, TransientError
from hlstream.common.lifecycle_io import StopFlag, StopRequestedError, call_until_stopped
from hlstream.common.log import EventLog
from hlstream.common.rest_io import InfoClient
from hlstream.common.status import RestTracker
from hlstream.common.universe import check_coins, resolve_coins
from hlstream.common.universe_io import fetch_listing, retry_until_stopped

REQUEST_TIMEOUT_S = 10.0
LISTING_MIN_INTERVAL_S = 3.0


class Listing:
    """The exchange's coin names, shared by every link of the process."""

    def __init__(self, info_url: str, dexes: list[str], rest: RestTracker | None = None) -> None:
        self.client = InfoClient(info_url, timeout_s=REQUEST_TIMEOUT_S)
        self.dexes = dexes
        self.rest = rest or RestTracker()  # the requests of the check on start
        self._lock = threading.Lock()
        self._names: set[str] | None = None
        self._fetched_s = float("-inf")
        self._refetched_s = float("-inf")  # last fetch asked for by a link

    def fetch(self) -> tuple[Any, set[str]]:
        """(meta answer, every listed name); raises TransientError or ProtocolError."""
        with self._lock:
            return self._fetch()

    def _fetch(self) -> tuple[Any, set[str]]:
        meta, names = fetch_listing(self.client, self.dexes)
        self._names, self._fetched_s = names, time.monotonic()
        return meta, names

    def since(self, since_s: float) -> set[str] | None:
        """Listed names fetched at or after `since_s` (monotonic); None while rate-limited;
        TransientError or ProtocolError when the fetch fails."""
        with self._lock:
            if self._names is not None and self._fetched_s >= since_s:
                return self._names
            if time.monotonic() - self._refetched_s < LISTING_MIN_INTERVAL_S:
                return None
            self._refetched_s = time.monotonic()
            return self._fetch()[1]

    def check(
        self,
        settings: Settings,
        stop: StopFlag,
        clock: Clock,
        log: EventLog,
        sleep: Callable[[float], None],
    ) -> Settings:
        """`settings` with `coins = "all"` expanded and, if asked, every coin checked against
        the listing (ConfigError for an unknown one); StopRequestedError if stopped first."""

        def fetch() -> tuple[Any, set[str]]:
            try:
                answer = call_until_stopped(stop, self.fetch)
            except ProtocolError as exc:  # a garbled answer: as good as no answer, retry
                self.rest.failed(clock.now_ms(), f"malformed listing: {exc}")
                raise TransientError(f"malformed listing: {exc}") from exc
            except TransientError as exc:
                self.rest.failed(clock.now_ms(), str(exc))
                raise
            self.rest.succeeded(clock.now_ms())
            return answer

        try:
            meta, names = retry_until_stopped(settings, fetch, log, stop.is_set, sleep)
        except TransientError:  # retried FOREVER: it gives up only once stopped
            raise StopRequestedError from None
        coins = resolve_coins(settings, meta)
        if coins != settings.coins:
            settings = validate(replace(settings, coins=coins))
            log.info("coins_resolved", coins=len(coins), source="meta")
        if settings.validate_coins:
            check_coins(settings.coins + settings.book_coins + settings.bbo_coins, names)
            log.info("coins_validated", coins=len(settings.coins))
        return settings

    def close(self) -> None:
        self.client.close()
