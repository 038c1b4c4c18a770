"""POST JSON to the exchange's /info endpoint: TransientError for network trouble, timeouts,
429 (with Retry-After) and 5xx, ProtocolError for answers that are not the JSON asked for."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec
import requests

from hlstream.common.backoff import Backoff
from hlstream.common.errors import ProtocolError, TransientError

T = TypeVar("T")
REQUEST_TIMEOUT_S = 10.0
STOP_POLL_S = 0.2  # a backoff sleep checks the stop flag this often


_JSON = msgspec.json.Encoder()
_JSON_HEADERS = {"Content-Type": "application/json"}


class InfoClient:
    """A small client for POST /info with a persistent HTTP session."""

    def __init__(self, url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def post(self, body: Mapping[str, object]) -> Any:
        try:
            response = self.session.post(
                self.url, data=_JSON.encode(body), headers=_JSON_HEADERS, timeout=self.timeout_s
            )
        except requests.Timeout:
            raise TransientError(f"{self.url} timed out after {self.timeout_s}s") from None
        except requests.RequestException as exc:
            raise TransientError(f"{self.url} unreachable: {type(exc).__name__}") from None
        if response.status_code == 429:
            raise TransientError(
                "rate limited (HTTP 429)", retry_after_s=_retry_after(response.headers)
            )
        if response.status_code >= 500:
            raise TransientError(f"server error HTTP {response.status_code}")
        if response.status_code != 200:
            snippet = response.text[:200].replace("\n", " ")
            raise ProtocolError(f"HTTP {response.status_code} for {body.get('type')}: {snippet}")
        try:
            return response.json()
        except ValueError:
            raise ProtocolError(f"answer to {body.get('type')} is not JSON") from None

    def close(self) -> None:
        self.session.close()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


FOREVER = 1 << 30  # attempts: retry until stopped


def call_with_retry(
    action: Callable[[], T],
    *,
    attempts: int,
    on_retry: Callable[[int, float, TransientError], None],
    should_stop: Callable[[], bool] = lambda: False,
    rng: random.Random | None = None,
    base_s: float = 0.5,
    cap_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `action`, retrying TransientError with backoff and jitter up to `attempts` times."""
    backoff = Backoff(base_s, cap_s, rng or random.Random())
    attempt = 0
    while True:
        try:
            return action()
        except TransientError as exc:
            attempt += 1
            if attempt >= attempts or should_stop():
                raise
            delay = backoff.next_delay(floor_s=exc.retry_after_s or 0.0)
            on_retry(attempt, delay, exc)
            _sleep_unless_stopped(delay, should_stop, sleep)


def _sleep_unless_stopped(
    delay_s: float, should_stop: Callable[[], bool], sleep: Callable[[float], None]
) -> None:
    deadline = time.monotonic() + delay_s
    while not should_stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        sleep(min(left, STOP_POLL_S))
