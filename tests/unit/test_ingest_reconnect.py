"""Unit tests for ReconnectPolicy (services/ingest/core/liveness.py) with an injected clock and
RNG: backoff grows with jitter up to the cap, resets only after a healthy period, and connects
never exceed the venue's 30 per minute."""

from __future__ import annotations

import random

from hlstream.common.backoff import Backoff, WindowLimit
from hlstream.services.ingest.core.liveness import ReconnectPolicy

BASE_S, CAP_S = 0.5, 30.0


def policy(seed: int = 7, limit: WindowLimit | None = None) -> ReconnectPolicy:
    return ReconnectPolicy(
        Backoff(BASE_S, CAP_S, random.Random(seed)),
        limit or WindowLimit(30, 60.0),
        healthy_after_s=30.0,
    )


def failing_delays(p: ReconnectPolicy, count: int, now_s: float = 0.0) -> list[float]:
    """Connect, fail at once, ask for the next delay; `count` times."""
    delays = []
    for _ in range(count):
        assert p.grant(now_s) == 0.0
        p.on_disconnect()
        delay = p.delay_s(now_s)
        delays.append(delay)
        now_s += delay + 60.0  # far apart: the window never binds here
    return delays


def test_first_connect_does_not_wait() -> None:
    assert policy().delay_s(0.0) == 0.0


def test_delays_grow_with_equal_jitter_and_stop_at_the_cap() -> None:
    delays = failing_delays(policy(), 12)

    for attempt, delay in enumerate(delays):
        ceiling = min(CAP_S, BASE_S * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert delays[5] > delays[0] * 4
    assert max(delays) <= CAP_S
    assert all(delay >= CAP_S / 2 for delay in delays[7:])


def test_jitter_comes_from_the_injected_rng() -> None:
    assert failing_delays(policy(seed=1), 8) == failing_delays(policy(seed=1), 8)
    assert failing_delays(policy(seed=1), 8) != failing_delays(policy(seed=2), 8)


def test_data_before_the_healthy_period_does_not_reset_backoff() -> None:
    p = policy()
    failing_delays(p, 4)
    p.grant(1000.0)

    assert p.on_frame(1010.0, is_data=True) is False
    p.on_disconnect()

    assert p.backoff.attempt == 4
    assert p.delay_s(1011.0) >= BASE_S * 2**4 / 2


def test_a_connection_without_data_never_becomes_healthy() -> None:
    p = policy()
    failing_delays(p, 3)
    p.grant(1000.0)

    assert p.on_frame(1100.0, is_data=False) is False  # pongs only
    assert p.backoff.attempt == 3


def test_data_after_the_healthy_period_resets_backoff_once() -> None:
    p = policy()
    failing_delays(p, 5)
    p.grant(1000.0)
    p.on_frame(1001.0, is_data=True)

    assert p.on_frame(1030.0, is_data=False) is True
    assert p.on_frame(1031.0, is_data=True) is False
    p.on_disconnect()

    assert p.backoff.attempt == 0
    assert BASE_S / 2 <= p.delay_s(1032.0) <= BASE_S


def test_connects_never_exceed_thirty_per_minute_even_with_tiny_backoff() -> None:
    limit = WindowLimit(30, 60.0)
    links = [
        ReconnectPolicy(Backoff(0.01, 0.02, random.Random(i)), limit) for i in range(3)
    ]  # three links share the per-IP window
    now_s = 0.0
    connects: list[float] = []
    while len(connects) < 100:
        for p in links:
            now_s += p.delay_s(now_s)
            while (wait := p.grant(now_s)) > 0:
                now_s += wait
            connects.append(now_s)
            p.on_disconnect()  # fails at once

    for i, start in enumerate(connects):
        in_window = [t for t in connects[i:] if t < start + 60.0]
        assert len(in_window) <= 30
    assert connects[30] >= connects[0] + 60.0
