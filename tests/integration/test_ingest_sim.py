"""Integration: `python -m hlstream.services.ingest` against the simulated exchange (FakeExchange)
over real ZeroMQ ipc: delisting mid-run, sharding over several connections, optional book /
bbo / userFills channels, and exactly-once delivery across reconnects and restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hlstream.common.status_io import read_status
from hlstream.sim.exchange import FakeExchange
from tests.support.bus import Bus, Key
from tests.support.exchange import exchange_fixture
from tests.support.procs import terminate
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "0x" + "ab" * 20


exchange = exchange_fixture(coins=("BTC", "ETH", "SOL", "XRP", "DOGE"), seed=5, rate_per_coin=8.0)


def start_ingest(run_dir: Path, fake: FakeExchange, **settings: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update(
        HLSTREAM_WS_URL=fake.ws_url,
        HLSTREAM_INFO_URL=fake.info_url,
        HLSTREAM_COINS="BTC,ETH",
        HLSTREAM_RUN_DIR=str(run_dir),
        HLSTREAM_DATA_DIR=str(run_dir.parent / "data"),
        HLSTREAM_STALE_SECONDS="3",
        HLSTREAM_BACKOFF_BASE_SECONDS="0.05",
        HLSTREAM_BACKOFF_CAP_SECONDS="0.5",
    )
    env.update({f"HLSTREAM_{key.upper()}": value for key, value in settings.items()})
    return subprocess.Popen(
        [sys.executable, "-m", "hlstream.services.ingest"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_ingest(proc: subprocess.Popen[str]) -> str:
    """SIGTERM; assert a clean exit 0; return stderr."""
    code, stderr, stopped = terminate(proc)
    if not stopped:
        pytest.fail(f"ingest did not stop on SIGTERM:\n{stderr}")
    assert code == 0, stderr
    return stderr


def status(run_dir: Path) -> dict[str, Any]:
    """Ingest's last heartbeat flattened: its counters plus its feed's fields."""
    heartbeat = read_status(run_dir, "ingest")
    if heartbeat is None:
        return {}
    flat: dict[str, Any] = dict(heartbeat.counters)
    if heartbeat.feed is not None:
        flat.update(
            connected=heartbeat.feed.connected,
            links_up=heartbeat.feed.links_up,
            delisted=list(heartbeat.feed.delisted),
        )
    return flat


def fake_keys(fake: FakeExchange, coin: str) -> set[Key]:
    return {(coin, t["time"], t["tid"]) for t in fake.trades(coin)}


def assert_exact(
    published: list[Key],
    fake: FakeExchange,
    coins: list[str],
    gaps: list[dict[str, Any]] | None = None,
) -> None:
    """No duplicates; per coin every fake trade between the first and last published, except
    trades inside a reported gap marker."""
    assert len(published) == len(set(published)), "a trade was published twice"
    for coin in coins:
        mine = {key for key in published if key[0] == coin}
        assert mine, f"no {coin} trade was published"
        low, high = min(k[1] for k in mine), max(k[1] for k in mine)
        expected = {key for key in fake_keys(fake, coin) if low <= key[1] <= high}
        covered = [(g["from_ms"], g["to_ms"]) for g in gaps or [] if g["coin"] == coin]
        missing = {key for key in expected - mine if not any(a <= key[1] <= b for a, b in covered)}
        assert not missing and mine <= expected, (
            f"{coin}: {len(missing)} missing outside gaps, {len(mine - expected)} extra"
        )


# ---- scenarios ---------------------------------------------------------------------------


def test_delisted_coin_is_dropped_and_the_others_keep_streaming(
    tmp_path: Path, exchange: FakeExchange
) -> None:
    run_dir = tmp_path / "run"
    bus = Bus(run_dir)
    proc = start_ingest(run_dir, exchange, coins="BTC,ETH,SOL")
    try:
        assert bus.poll_until(lambda: bus.coins_after(0) == {"BTC", "ETH", "SOL"}, 15)
        delist_ms = int(time.time() * 1000)

        exchange.delist("SOL")

        assert bus.poll_until(lambda: bus.coins_after(delist_ms + 1500) == {"BTC", "ETH"}, 15)
        wait_for(
            lambda: status(run_dir).get("delisted") == ["SOL"] and status(run_dir)["connected"],
            5,
            "status: connected, SOL delisted",
        )
        assert exchange.connection_count() == 1
        assert proc.poll() is None
    finally:
        stderr = stop_ingest(proc)
        bus.close()
    assert not [k for k in bus.trade_keys() if k[0] == "SOL" and k[1] > delist_ms]
    delisted = [line for line in stderr.splitlines() if "event=coin_delisted" in line]
    assert len(delisted) == 1 and " ERROR " in delisted[0] and "coin=SOL" in delisted[0]
    assert_exact(bus.trade_keys(), exchange, ["BTC", "ETH"])


def test_all_five_perps_at_two_per_connection_use_three_links_exactly_once_across_drops(
    tmp_path: Path, exchange: FakeExchange
) -> None:
    coins = ["BTC", "ETH", "SOL", "XRP", "DOGE"]  # every perp; the spot pairs are not "all"
    run_dir = tmp_path / "run"
    bus = Bus(run_dir)
    proc = start_ingest(run_dir, exchange, coins="all", ws_subscriptions_per_connection="2")
    try:
        assert bus.poll_until(lambda: bus.coins_after(0) == set(coins), 15)
        assert exchange.connection_count() == 3
        wait_for(lambda: status(run_dir).get("links_up") == 3, 5, "three links in status")
        subscribes = exchange.subscribe_count()

        exchange.drop_connections()  # the server closes every link: each backs off, returns
        dropped_ms = int(time.time() * 1000)

        assert bus.poll_until(lambda: bus.coins_after(dropped_ms + 1000) == set(coins), 15)
        assert exchange.connection_count() == 3
        assert exchange.subscribe_count() == subscribes + 5
        bus.poll_until(lambda: False, 0.5)
    finally:
        stderr = stop_ingest(proc)
        bus.close()
    assert stderr.count("event=ws_reconnect") == 3
    assert "event=coins_resolved service=ingest coins=5" in stderr
    assert bus.coins_after(0) == set(coins)
    assert bus.of_type("gap") == []
    assert_exact(bus.trade_keys(), exchange, coins)


def test_book_bbo_and_fills_channels_publish_on_their_own_topics(
    tmp_path: Path, exchange: FakeExchange
) -> None:
    run_dir = tmp_path / "run"
    bus = Bus(run_dir, prefixes=("book.BTC|", "bbo.ETH|", "status."))
    proc = start_ingest(run_dir, exchange, book_coins="BTC", bbo_coins="ETH", user_fills=ADDRESS)
    try:
        assert bus.poll_until(lambda: len(bus.of_type("book")) >= 2, 15)
        assert bus.poll_until(lambda: len(bus.of_type("bbo")) >= 2, 5)
        exchange.drop_connections()
        count = len(bus.of_type("book"))
        assert bus.poll_until(lambda: len(bus.of_type("book")) >= count + 2, 10)  # resubscribed
    finally:
        stderr = stop_ingest(proc)
        bus.close()
    assert {topic for topic, body in bus.messages if body["type"] == "book"} == {"book.BTC|"}
    book = bus.of_type("book")[-1]
    assert book["coin"] == "BTC" and isinstance(book["ts_ms"], int) and book["recv_ms"] > 0
    level = book["bids"][0]
    assert set(level) == {"price", "size", "orders"} and isinstance(level["orders"], int)
    assert float(book["bids"][0]["price"]) < float(book["asks"][0]["price"])
    bbo = bus.of_type("bbo")[-1]
    assert bbo["coin"] == "ETH" and set(bbo["bid"]) == {"price", "size", "orders"}
    # The simulator does not serve userFills: its error frame is logged with our request.
    errors = [line for line in stderr.splitlines() if "event=ws_error" in line]
    assert errors and "userFills" in errors[0] and "exact=True" in errors[0]


def test_restart_mid_stream_publishes_every_trade_exactly_once(
    tmp_path: Path, exchange: FakeExchange
) -> None:
    coins = ["BTC", "ETH"]
    run_dir = tmp_path / "run"
    bus = Bus(run_dir)
    try:
        for _ in range(2):
            known = bus.sessions()
            proc = start_ingest(run_dir, exchange, coins=",".join(coins))
            try:
                assert bus.poll_until(lambda k=known: bus.sessions() - k, 15), "no heartbeat"
                started = len(bus.trade_keys())
                assert bus.poll_until(lambda s=started: len(bus.trade_keys()) > s + 20, 15)
            finally:
                stop_ingest(proc)
            bus.poll_until(lambda: False, 0.3)
    finally:
        bus.close()
    assert len(bus.sessions()) == 2
    assert bus.of_type("gap") == []  # the downtime was shorter than the replay window
    # The second ingest's first messages can go out before this SUB has reconnected; their
    # seq says so, and their trades are on the tape where the next message's span begins.
    assert_exact(bus.trade_keys_with_missed(run_dir.parent / "data"), exchange, coins)


def test_zombie_links_are_replaced_and_garbage_is_counted_without_loss(
    tmp_path: Path, exchange: FakeExchange
) -> None:
    coins = ["BTC", "ETH"]
    exchange.set_rate(3.0)
    run_dir = tmp_path / "run"
    bus = Bus(run_dir)
    proc = start_ingest(
        run_dir,
        exchange,
        coins="BTC,ETH",
        ws_subscriptions_per_connection="1",
        stale_seconds="2",
    )
    try:
        assert bus.poll_until(lambda: bus.coins_after(0) == set(coins), 15)
        wait_for(lambda: exchange.connection_count() == 2, 5, "two links")
        exchange.inject_raw("not json{")
        wait_for(lambda: status(run_dir).get("malformed") == 2, 5, "one bad frame per link")

        exchange.set_zombie(True)  # open sockets, no frames: each link's stale timer fires
        wait_for(lambda: status(run_dir).get("reconnects", 0) >= 2, 10, "both links replaced")
        exchange.set_zombie(False)
        revived_ms = int(time.time() * 1000)

        assert bus.poll_until(lambda: bus.coins_after(revived_ms + 1000) == set(coins), 15)
        assert proc.poll() is None
    finally:
        stderr = stop_ingest(proc)
        bus.close()
    assert stderr.count("event=ws_stale") >= 2
    # More than the ~30 replayed trades may pass while the feed is dead: then, and only then,
    # trades are missing, and every one of them lies inside a published gap marker.
    assert_exact(bus.trade_keys(), exchange, coins, gaps=bus.of_type("gap"))
