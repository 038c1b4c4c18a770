"""The fake exchange's REST fault queue (sim.faults, which fail_rest, queue_rest_fault and
delay_rest fill and every /info request spends) and the candle faults candleSnapshot meets."""

from __future__ import annotations

import json
import random

from hlstream.sim import market, rest
from hlstream.sim.exchange import FakeExchange
from hlstream.sim.faults import CandleFault, Faults, RestFault
from hlstream.sim.market import Listing


def spend(faults: Faults, requests: int) -> list[tuple[int, float]]:
    taken = [faults.take_rest_fault() for _ in range(requests)]
    return [(0, 0.0) if f is None else (f.status, f.delay_s) for f in taken]


def test_rest_faults_are_met_in_order_then_normal_answers() -> None:
    faults = Faults()
    faults.rest_queue.extend([RestFault(429, 1, retry_after_s=1.0), RestFault(500, 1)])
    faults.rest_queue.append(RestFault(0, 2, delay_s=1.5))
    assert faults.rest_pending() == 4
    assert spend(faults, 5) == [(429, 0.0), (500, 0.0), (0, 1.5), (0, 1.5), (0, 0.0)]
    assert faults.rest_pending() == 0 and not faults.rest_queue


def test_a_new_fail_rest_replaces_what_is_pending() -> None:
    exchange = FakeExchange(coins=["BTC"], spot=[], rate_per_coin=0, history_hours=0)
    exchange.fail_rest(503, 10)
    exchange.delay_rest(1.0, 2)
    exchange.fail_rest(503, 1)
    assert exchange.rest_faults_pending() == 1


def test_blackhole_of_none_silences_every_coin() -> None:
    faults = Faults()
    faults.blackhole.add("BTC")
    assert not faults.is_sent("BTC") and faults.is_sent("ETH")
    faults.blackhole.add(None)
    assert not faults.is_sent("ETH")


def test_candle_faults_change_delay_or_withhold_one_candle_each() -> None:
    minute = 60_000
    t0 = 1_764_500_040_000 - 1_764_500_040_000 % minute
    rng = random.Random(1)
    trades = [market.venue_trade("BTC", t0 + k * 20_000, "100", "1", rng) for k in range(12)]
    listing = Listing(["BTC"], [], set())
    faults = Faults(
        candle_faults={
            ("BTC", "1m", t0): CandleFault({"v": "9", "c": "101", "n": 7}),
            ("BTC", "1m", t0 + minute): CandleFault(published_ms=t0 + 10 * minute),
            ("BTC", "1m", t0 + 2 * minute): CandleFault(missing=True),
            ("BTC", "5m", t0 + minute): CandleFault(missing=True),  # another interval's key
        }
    )
    body = {"type": "candleSnapshot", "req": {"coin": "BTC", "interval": "1m", "startTime": t0}}

    def served(now_ms: int) -> dict[int, tuple[str, str, int]]:
        reply = rest.answer(body, listing, {"BTC": trades}, now_ms, faults)
        return {c["t"]: (c["v"], c["c"], c["n"]) for c in json.loads(reply.text)}

    before = served(t0 + 9 * minute)
    assert before == {t0: ("9", "101", 7), t0 + 3 * minute: ("3.0", "100", 3)}
    after = served(t0 + 10 * minute)
    assert after == {**before, t0 + minute: ("3.0", "100", 3)}, "published late, then served"
