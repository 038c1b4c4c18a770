"""The fake exchange's REST fault queue (sim.faults), which fail_rest, queue_rest_fault and
delay_rest fill and every /info request spends."""

from __future__ import annotations

from hlstream.sim.faults import Faults, RestFault


def spend(faults: Faults, requests: int) -> list[tuple[int, float]]:
    taken = [faults.take_rest_fault() for _ in range(requests)]
    return [(0, 0.0) if f is None else (f.status, f.delay_s) for f in taken]


def test_fail_rest_goes_first_then_the_queue_in_order_then_normal_answers() -> None:
    faults = Faults()
    faults.rest_queue.append(RestFault(500, 1))
    faults.rest_queue.append(RestFault(0, 2, delay_s=1.5))
    faults.rest_now = RestFault(429, 1, retry_after_s=1.0)
    assert faults.rest_pending() == 4
    assert spend(faults, 5) == [(429, 0.0), (500, 0.0), (0, 1.5), (0, 1.5), (0, 0.0)]
    assert faults.rest_pending() == 0 and not faults.rest_queue


def test_a_new_fail_rest_replaces_what_is_left_of_the_last() -> None:
    faults = Faults()
    faults.rest_now = RestFault(503, 10)
    assert spend(faults, 4) == [(503, 0.0)] * 4
    faults.rest_now = RestFault(503, 1)
    assert spend(faults, 2) == [(503, 0.0), (0, 0.0)]


def test_blackhole_of_none_silences_every_coin() -> None:
    faults = Faults()
    faults.blackhole.add("BTC")
    assert not faults.is_sent("BTC") and faults.is_sent("ETH")
    faults.blackhole.add(None)
    assert not faults.is_sent("ETH")
