"""The writer's candleSnapshot requests, and the "settled candle" that replaces a partial bar.

Invariants:
- every attempt (retries included) spends weight from ONE budget shared by the process;
- windows beyond candleSnapshot's reach are never asked for (`backfill_beyond_reach`);
- a partial bar is replaced only by a candle that covers it (core.candle_covers), else written
  as is, never a stale candle."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from hlstream.common.backoff import WeightBudget
from hlstream.common.config import Settings
from hlstream.common.errors import ProtocolError, TransientError
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.common.rest_io import call_with_retry
from hlstream.common.status import RestTracker
from hlstream.common.timebucket import format_window, has_rest_candles
from hlstream.services.writer import core

REST_WEIGHT_PER_MINUTE = 1200.0
PARTIAL_FETCHES = 3  # fetches of a candle that does not cover a partial bar yet
PARTIAL_RETRY_S = 1.0


class Info(Protocol):
    def post(self, body: Mapping[str, object]) -> Any: ...


@dataclass
class CandleSource:
    """candleSnapshot for the writer: shared budget, reach, retries, settled candles."""

    info: Info
    settings: Settings
    stop: StopFlag
    log: EventLog
    _: KW_ONLY
    now_ms: Callable[[], int]
    sleep: Callable[[float], None]
    rng: random.Random
    budget: WeightBudget = field(default_factory=lambda: WeightBudget(REST_WEIGHT_PER_MINUTE))
    clock_s: Callable[[], float] = time.monotonic  # the budget's clock
    errors: int = 0
    health: RestTracker = field(default_factory=RestTracker)  # every attempt, for the heartbeat

    def candles(
        self, coin: str, interval: str, start_ms: int, end_ms: int, attempts: int
    ) -> list[Bar]:
        """Candles for windows in [start_ms, end_ms); TransientError/ProtocolError on failure."""
        interval_ms = self.settings.interval_ms[interval]
        reach_ms = core.rest_reach_start(self.now_ms(), interval_ms)
        if start_ms < reach_ms:
            self.log.warning(
                "backfill_beyond_reach",
                coin=coin,
                interval=interval,
                windows=core.window_count(start_ms, min(end_ms, reach_ms), interval_ms),
                start=format_window(start_ms),
                reach=format_window(reach_ms),
                max_candles=core.MAX_CANDLES,
                note="candleSnapshot serves only the most recent candles; these windows are "
                "carried forward from the previous close",
            )
            start_ms = reach_ms
        if start_ms >= end_ms:
            return []
        weight = core.candle_weight(core.window_count(start_ms, end_ms, interval_ms))
        body = core.candle_request(coin, interval, start_ms, end_ms)

        def post() -> Any:
            self._spend(weight)  # every attempt costs weight, retries included
            return self.info.post(body)

        def on_retry(attempt: int, delay_s: float, exc: TransientError) -> None:
            self.health.failed(self.now_ms(), str(exc))
            self.log.repeated(
                logging.WARNING,
                "rest_retry",
                str(exc),
                coin=coin,
                interval=interval,
                attempt=attempt,
                delay_ms=int(delay_s * 1000),
                retry_after_s=exc.retry_after_s,
            )

        try:
            answer = call_with_retry(
                post,
                attempts=attempts,
                on_retry=on_retry,
                should_stop=self.stop.is_set,
                rng=self.rng,
                base_s=self.settings.backoff_base_seconds,
                cap_s=self.settings.backoff_cap_seconds,
                sleep=self.sleep,
            )
            bars = core.candles_to_bars(answer, coin, interval, interval_ms)
        except (TransientError, ProtocolError) as exc:
            self.errors += 1
            self.health.failed(self.now_ms(), str(exc))
            self.log.repeated(
                logging.ERROR,
                "rest_failed",
                str(exc),
                coin=coin,
                interval=interval,
                from_ms=start_ms,
                to_ms=end_ms,
            )
            raise
        self.health.succeeded(self.now_ms())
        return [bar for bar in bars if start_ms <= bar.start_ms < end_ms]

    def _spend(self, weight: float) -> None:
        """Wait until the shared budget allows `weight`, then spend it."""
        wait_s = self.budget.wait_s(weight, self.clock_s())
        if wait_s > 0:
            self.log.info("rest_weight_wait", wait_ms=int(wait_s * 1000), weight=weight)
            self.stop.wait(wait_s)
        self.budget.spend(weight, self.clock_s())

    def settled_candle(self, bar: Bar, prev_close: str | None) -> tuple[Bar | None, str]:
        """The bar to write instead of partial `bar` (the venue's covering candle, or a carry
        of `prev_close` for a window both sides saw empty), or (None, reason) to write it."""
        if not has_rest_candles(bar.interval):
            return None, "no_rest_candles"
        end_ms = bar.start_ms + self.settings.interval_ms[bar.interval]
        reason = "rest_failed"
        for fetch in range(PARTIAL_FETCHES):
            # Never wait more than the settle time: a window that has not ended on our clock
            # means the clocks disagree, not that waiting minutes would help.
            wait_ms = min(end_ms + core.REST_SETTLE_MS - self.now_ms(), core.REST_SETTLE_MS)
            if fetch or wait_ms > 0:
                self.stop.wait(max(wait_ms / 1000, PARTIAL_RETRY_S if fetch else 0.0))
            if self.stop.is_set():
                break
            try:
                candles = self.candles(bar.coin, bar.interval, bar.start_ms, end_ms, 2)
            except (TransientError, ProtocolError):
                return None, "rest_failed"
            candle = next((c for c in candles if c.start_ms == bar.start_ms), None)
            if candle is not None and core.candle_covers(candle, bar):
                return candle, "rest"
            if candle is None and bar.trades == 0 and prev_close is not None:
                return core.carry_bar(bar.coin, bar.interval, bar.start_ms, prev_close), "empty"
            reason = "rest_missing" if candle is None else "rest_candle_behind"
        return None, reason
