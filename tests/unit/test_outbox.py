"""The aggregator's outbox: in-order, stop-and-wait per series, resend until acked."""

from __future__ import annotations

from hlstream.services.aggregator.outbox import Outbox


def test_only_the_oldest_bar_of_a_series_is_in_flight():
    box = Outbox(resend_ms=1_000)
    box.add(("BTC", "5s", 0), b"a")
    box.add(("BTC", "5s", 5), b"b")
    box.add(("ETH", "5s", 0), b"c")
    assert [p for _, p in box.due(0)] == [b"a", b"c"]
    assert box.due(500) == []


def test_unacked_head_is_resent_after_resend_interval():
    box = Outbox(resend_ms=1_000)
    box.add(("BTC", "5s", 0), b"a")
    box.due(0)
    assert [p for _, p in box.due(1_000)] == [b"a"]
    assert box.resent == 1


def test_ack_releases_the_next_bar_immediately():
    box = Outbox(resend_ms=1_000)
    box.add(("BTC", "5s", 0), b"a")
    box.add(("BTC", "5s", 5), b"b")
    box.due(0)
    assert box.ack(("BTC", "5s", 0))
    assert [p for _, p in box.due(1)] == [b"b"]
    assert box.size == 1


def test_stale_ack_for_unknown_bar_is_ignored():
    box = Outbox()
    box.add(("BTC", "5s", 10), b"a")
    assert not box.ack(("BTC", "5s", 5))
    assert box.size == 1


def test_bounded_outbox_drops_oldest_and_counts():
    box = Outbox(max_bars=2)
    for start in range(3):
        box.add(("BTC", "5s", start), b"x")
    assert box.size == 2 and box.dropped == 1
