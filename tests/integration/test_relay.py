"""The relay against real servers: every trade once in JetStream across a relay kill -9,
two pipelines publishing one stream (A/B), bars into PostgreSQL after an outage, an unsafe
coin name, and bad credentials (tests/support/servers.py starts the servers)."""

from __future__ import annotations

import os
import signal
from collections import Counter

import msgspec
import pytest

from hlstream.services.relay.core import JsTrade, trade_subject
from hlstream.services.relay.shell import read_relay_status
from hlstream.common.tape_read_io import read_since
from hlstream.common.messages import Trade
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline
from tests.support.servers import NatsServer, stream_messages
from tests.support.wait import wait_for

exchange = exchange_fixture(coins=["BTC", "ETH"], spot=["PURR/USDC"], rate_per_coin=15.0, seed=7, history_hours=0.2)


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path).start()
    yield server
    server.stop()


def _relay(pipeline: Pipeline):
    return read_relay_status(pipeline.run_dir)


def _published(pipeline: Pipeline, at_least: int, not_pid: int = 0):
    status = _relay(pipeline)
    return status if status and status.pid != not_pid and status.published >= at_least else None


def _tape_ids(pipeline: Pipeline, coin: str) -> set[str]:
    return {
        f"{r.coin}:{r.ts_ms}:{r.tid}"
        for r, _ in read_since(pipeline.data_dir, coin, [])
        if isinstance(r, Trade)
    }


def _stream_trades(url: str) -> list[tuple[str, str, JsTrade]]:
    decoder = msgspec.msgpack.Decoder(JsTrade)
    return [
        (subject, msg_id, decoder.decode(data))
        for subject, msg_id, data in stream_messages(url, "HL_TRADES", "hl.trades.>")
    ]


def _wait_published(pipeline: Pipeline, coins, url: str) -> list[tuple[str, str, JsTrade]]:
    """Until the stream holds every trade on the pipeline's tape (the pipeline is paused)."""
    want = set().union(*(_tape_ids(pipeline, c) for c in coins))

    def done():
        got = _stream_trades(url)
        return got if want <= {m for _, m, _ in got} else None

    return wait_for(done, 60, "every tape trade in HL_TRADES")


def _truth_ids(exchange, coin: str, since_ms: int) -> set[str]:
    return {f"{coin}:{t['time']}:{t['tid']}" for t in exchange.trades(coin) if t["time"] >= since_ms}


def test_every_trade_once_in_the_stream_across_relay_kill_9(exchange, nats_server, tmp_path):
    coins = ("BTC", "PURR/USDC")
    pipeline = Pipeline(
        exchange, tmp_path / "a", coins=",".join(coins), intervals="5s",
        nats_url=nats_server.url, nats_duplicate_window_seconds="1",
    ).start()  # fmt: skip
    try:
        pipeline.wait_ready()
        first = wait_for(lambda: _published(pipeline, 100), 60, "relay publishing")
        progress = pipeline.run_dir / "relay-progress.json"
        old_progress = progress.read_bytes()
        os.kill(first.pid, signal.SIGKILL)
        second = wait_for(lambda: _published(pipeline, 50, first.pid), 60, "relay restarted")
        # The worst moment for a kill -9: the server acked many trades the progress does not
        # record yet. Recreate it: stop the relay, put the older progress back, restart.
        assert "stopped" in pipeline.supervisorctl("stop", "relay")
        progress.write_bytes(old_progress)
        assert "started" in pipeline.supervisorctl("start", "relay")
        third = wait_for(lambda: _published(pipeline, 1, second.pid), 60, "relay restarted again")
        exchange.pause_trades(True)
        messages = _wait_published(pipeline, coins, nats_server.url)
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]
    assert third.skipped + _relay(pipeline).skipped > 0, "the read-back found the acked trades"
    ids = Counter(msg_id for _, msg_id, _ in messages)
    assert [i for i, n in ids.items() if n > 1] == [], "a trade is in the stream twice"
    for coin in coins:
        tape = _tape_ids(pipeline, coin)
        stream = {m for subject, m, t in messages if t.coin == coin}
        assert stream == tape
        assert all(s == trade_subject(coin) for s, _, t in messages if t.coin == coin)
        first_ms = min(int(i.rsplit(":", 2)[1]) for i in tape)
        truth = _truth_ids(exchange, coin, first_ms + 1)
        assert truth <= stream, f"{coin}: trades of the venue missing from the stream"
    assert trade_subject("PURR/USDC") == "hl.trades.PURR%2FUSDC"
