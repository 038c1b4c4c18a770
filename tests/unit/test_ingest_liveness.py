"""When a link pings and when it is dead (core/liveness.py), on an injected clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hlstream.services.ingest.core.liveness import (
    PONG_TIMEOUT,
    SILENCE_GAP_REASON,
    SILENCE_SKEW_MS,
    STALE,
    Liveness,
    silence_gaps,
)


def live(now_s: float = 100.0, stale_s: float = 90.0) -> Liveness:
    liveness = Liveness(idle_ping_s=5.0, pong_timeout_s=5.0, ping_every_s=20.0, stale_s=stale_s)
    liveness.start(now_s)
    return liveness


def test_a_busy_link_pings_only_every_ping_seconds_and_stays_alive():
    liveness = live()
    pings = []
    for tick in range(1, 401):  # 40 s of frames every 0.1 s, a pong for each ping
        now = 100.0 + tick / 10
        if liveness.should_ping(now):
            pings.append(now)
            liveness.on_ping_sent(now)
        liveness.on_frames(now, pong=bool(pings) and pings[-1] == now - 0.1)
        assert liveness.verdict(now) is None
    assert [round(p - 100.0, 1) for p in pings] == [20.0, 40.0]


def test_silence_pings_at_once_after_idle_ping_seconds():
    liveness = live()
    assert not liveness.should_ping(104.9)
    assert liveness.should_ping(105.0)
    liveness.on_ping_sent(105.0)
    assert not liveness.should_ping(106.0), "one ping per silence, not one per read timeout"
    assert not liveness.vouches(), "a silence awaiting its pong vouches for nothing"


def test_a_pong_proves_a_quiet_link_alive_and_the_next_silence_pings_again():
    liveness = live()
    liveness.on_ping_sent(105.0)
    liveness.on_frames(105.01, pong=True)
    assert liveness.vouches() and liveness.verdict(109.9) is None
    assert not liveness.should_ping(110.0)
    assert liveness.should_ping(110.01)


def test_no_pong_within_the_timeout_is_a_dead_link():
    liveness = live()
    liveness.on_ping_sent(105.0)
    assert liveness.verdict(109.99) is None
    assert liveness.verdict(110.0) == PONG_TIMEOUT


def test_frames_without_the_pong_do_not_save_a_link_whose_ping_was_lost():
    liveness = live()
    liveness.on_ping_sent(105.0)
    liveness.on_frames(107.0, pong=False)  # the feed resumed, the ping was lost in the silence
    assert not liveness.vouches()
    assert liveness.verdict(110.0) == PONG_TIMEOUT


def test_stale_is_a_bound_of_its_own():
    liveness = live(stale_s=3.0)
    assert liveness.verdict(102.9) is None
    assert liveness.verdict(103.0) == STALE


@given(
    gap_s=st.floats(min_value=0.0, max_value=60.0),
    step_s=st.floats(min_value=0.01, max_value=1.0),
)
def test_any_silence_is_found_within_idle_ping_plus_pong_timeout_plus_a_step(
    gap_s: float, step_s: float
) -> None:
    """Polled every `step_s`, a link silent from t=100 is dead no later than
    idle_ping + pong_timeout (+ two polls) after its last frame, and never before."""
    liveness = live()
    now, dead_at = 100.0, None
    while now < 100.0 + gap_s + 20:
        now += step_s
        if liveness.verdict(now) is not None:
            dead_at = now
            break
        if liveness.should_ping(now):
            liveness.on_ping_sent(now)
    assert dead_at is not None
    assert 110.0 <= dead_at <= 110.0 + 2 * step_s + 1e-9


def test_silence_gaps_cover_the_silence_for_every_coin():
    gaps = silence_gaps(("BTC", "ETH"), last_rx_ms=50_000, dead_ms=60_000)
    assert [(g.coin, g.from_ms, g.to_ms, g.reason) for g in gaps] == [
        ("BTC", 50_000 - SILENCE_SKEW_MS, 60_000, SILENCE_GAP_REASON),
        ("ETH", 50_000 - SILENCE_SKEW_MS, 60_000, SILENCE_GAP_REASON),
    ]
