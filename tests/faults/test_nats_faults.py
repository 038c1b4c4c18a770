"""JetStream failing under a running relay loses nothing and repeats nothing: nats-server
stopped (SIGTERM) mid-run and restarted on its port and store (a `Tap.nats` open across the
restart gets every trade once), and one node of a 3-node cluster with replicas 3 killed -9
mid-run (tests/support/servers.py starts the servers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import msgspec

from hlstream.common.messages import Trade
from hlstream.common.tape.readers_io import read_since
from hlstream.services.relay.core import JsTrade
from hlstream.services.relay.files_io import read_relay_status
from hlstream.tap import Tap
from hlstream.tap_nats import JetStreamTap
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline
from tests.support.servers import NatsCluster, NatsServer, stream_messages
from tests.support.wait import wait_for

COINS = ("BTC", "PURR/USDC")
exchange = exchange_fixture(
    coins=["BTC"], spot=["PURR/USDC"], rate_per_coin=20.0, seed=23, history_hours=0.1
)


def _published(pipeline: Pipeline) -> int:
    status = read_relay_status(pipeline.run_dir)
    return status.published if status else 0


def _tape_ids(pipeline: Pipeline) -> set[str]:
    return {
        f"{r.coin}:{r.ts_ms}:{r.tid}"
        for coin in COINS
        for r, _ in read_since(pipeline.data_dir, coin, [])
        if isinstance(r, Trade)
    }


def _stream_ids(url: str) -> list[str]:
    decoder = msgspec.msgpack.Decoder(JsTrade)
    messages = stream_messages(url, "HL_TRADES", "hl.trades.>")
    for _, msg_id, data in messages:
        trade = decoder.decode(data)
        assert msg_id == f"{trade.coin}:{trade.ts_ms}:{trade.tid}"
    return [msg_id for _, msg_id, _ in messages]


def _venue_missing(exchange, ids: set[str]) -> set[str]:
    """The venue's trades since the first of each coin in `ids` that `ids` lacks."""
    missing: set[str] = set()
    for coin in COINS:
        first_ms = min(int(i.rsplit(":", 2)[1]) for i in ids if i.startswith(f"{coin}:"))
        truth = {f"{coin}:{t['time']}:{t['tid']}" for t in exchange.trades(coin)}
        missing |= {i for i in truth if int(i.rsplit(":", 2)[1]) > first_ms} - ids
    return missing


def _assert_every_trade_once(exchange, pipeline: Pipeline, url: str) -> list[str]:
    """With the venue paused: the stream holds the tape and the venue's truth, each once."""
    exchange.pause_trades(True)  # the last trades sent may still be on their way to the tape
    tape = wait_for(
        lambda: (got := _tape_ids(pipeline)) and not _venue_missing(exchange, got) and got,
        30,
        "every venue trade on the tape",
    )
    ids = wait_for(
        lambda: (got := _stream_ids(url)) and tape <= set(got) and got, 90, "the tape in HL_TRADES"
    )
    assert [i for i, n in Counter(ids).items() if n > 1] == [], "a trade is in the stream twice"
    assert set(ids) == tape
    assert _venue_missing(exchange, set(ids)) == set(), "venue trades missing from the stream"
    return ids


def _run_through(exchange, pipeline: Pipeline, fault, url: Callable[[], str]) -> list[str]:
    """Publish, inject `fault`, publish more, then check the stream (read at `url()` after
    the fault) against the truth."""
    try:
        pipeline.wait_ready()
        wait_for(lambda: _published(pipeline) >= 100, 60, "relay publishing")
        fault()
        seen = _published(pipeline)
        wait_for(lambda: _published(pipeline) >= seen + 150, 90, "relay publishing again")
        ids = _assert_every_trade_once(exchange, pipeline, url())
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]
    return ids


def test_nats_restart_mid_run_loses_nothing(exchange, tmp_path):
    server = NatsServer(tmp_path).start()
    pipeline = Pipeline(
        exchange, tmp_path / "p", coins=",".join(COINS), intervals="5s", nats_url=server.url,
        backoff_cap_seconds="2",
    ).start()  # fmt: skip

    taps: list[JetStreamTap] = []

    def restart() -> None:
        taps.append(Tap.nats(server.url, ["trade."], timeout_ms=10_000, since_ms=0))
        server.stop()  # SIGTERM, with publishes in flight
        errors = read_relay_status(pipeline.run_dir).errors
        wait_for(
            lambda: (s := read_relay_status(pipeline.run_dir)) and s.errors > errors
            and not s.nats.connected, 30, "the relay sees NATS down",
        )  # fmt: skip
        taped = len(_tape_ids(pipeline))
        wait_for(lambda: len(_tape_ids(pipeline)) > taped + 50, 30, "the tape grows meanwhile")
        server.start()  # same port, same store

    try:
        ids = _run_through(exchange, pipeline, restart, lambda: server.url)
        tapped = []  # a tap open across the restart gets each stored trade once, in order
        for message in taps[0]:
            tapped += [f"{t['coin']}:{t['ts_ms']}:{t['tid']}" for t in message.data["trades"]]
            if len(tapped) >= len(ids):
                break
        assert tapped == ids
    finally:
        for tap in taps:
            tap.close()
        server.stop()
    assert "event=read_back" in (pipeline.run_dir / "logs" / "relay.log").read_text()


def test_one_node_of_a_replicas_3_cluster_killed_mid_run_loses_nothing(exchange, tmp_path):
    cluster = NatsCluster(tmp_path).start()
    pipeline = Pipeline(
        exchange, tmp_path / "p", coins=",".join(COINS), intervals="5s", nats_url=cluster.url,
        nats_replicas="3", backoff_cap_seconds="2",
    ).start()  # fmt: skip
    survivors: list[NatsServer] = []

    def kill_the_stream_leader() -> None:
        info = cluster.stream_info("HL_TRADES")
        assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
        leader = cluster.stream_leader("HL_TRADES")
        leader.kill()  # SIGKILL: no goodbye to the relay or the other nodes
        survivors.extend(node for node in cluster.nodes if node is not leader)

    try:
        _run_through(exchange, pipeline, kill_the_stream_leader, lambda: survivors[0].url)
    finally:
        cluster.stop()
