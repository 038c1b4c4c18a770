"""The relay against real servers: every trade once in JetStream across a relay kill -9,
two pipelines publishing one stream (A/B), bars into PostgreSQL after an outage, an unsafe
coin name, and bad credentials (tests/support/servers.py starts the servers)."""

from __future__ import annotations

import os
import signal
from collections import Counter

import msgspec
import pytest

from hlstream.common.messages import Trade
from hlstream.common.tape.readers_io import read_since
from hlstream.services.relay.core import JsTrade, trade_subject
from hlstream.services.relay.files_io import read_relay_status
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import Pipeline, read_rows
from tests.support.servers import NatsServer, stream_messages
from tests.support.wait import wait_for

pytestmark = pytest.mark.long(75)

exchange = exchange_fixture(
    coins=["BTC", "ETH"], spot=["PURR/USDC"], rate_per_coin=15.0, seed=7, history_hours=0.2
)


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
    return {
        f"{coin}:{t['time']}:{t['tid']}" for t in exchange.trades(coin) if t["time"] >= since_ms
    }


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


def test_two_pipelines_publish_each_trade_once_while_one_is_killed_and_restarted(
    exchange, nats_server, tmp_path
):
    coins = ("BTC", "ETH")
    settings = dict(
        coins=",".join(coins), intervals="5s", nats_url=nats_server.url,
        nats_duplicate_window_seconds="3",
    )  # fmt: skip
    a = Pipeline(exchange, tmp_path / "a", **settings).start()
    b = Pipeline(exchange, tmp_path / "b", **settings).start()
    try:
        a.wait_ready()
        b.wait_ready()
        wait_for(lambda: _published(a, 50) and _published(b, 1), 60, "both relays publishing")
        assert "stopped" in b.supervisorctl("stop", "ingest")
        seen = _relay(a).published
        wait_for(lambda: _published(a, seen + 60), 60, "A publishing alone")
        code, output = b.stop()
        assert code == 0, output[-3000:]
        seen = _relay(a).published
        wait_for(lambda: _published(a, seen + 100), 60, "A publishing, B down past the window")
        b.start()
        b.wait_ready()
        wait_for(lambda: (s := _relay(b)) and (s.skipped + s.duplicates) > 0, 60, "B caught up")
        exchange.pause_trades(True)
        # A trade sent just before the pause may reach A's tape after this line: wait for
        # the venue's whole history since A's tape began, not only what the tapes hold now.
        firsts = {c: min(int(i.rsplit(":", 2)[1]) for i in _tape_ids(a, c)) for c in coins}
        want = set().union(*(_truth_ids(exchange, c, firsts[c] + 1) for c in coins))
        want |= set().union(*(_tape_ids(p, c) for p in (a, b) for c in coins))
        messages = wait_for(
            lambda: (got := _stream_trades(nats_server.url)) and want <= {m for _, m, _ in got}
            and got, 60, "both tapes and the venue's trades in the stream",
        )  # fmt: skip
        b_status = _relay(b)
    finally:
        for pipeline in (a, b):
            if pipeline.proc is not None and pipeline.proc.poll() is None:
                pipeline.stop()
    ids = Counter(msg_id for _, msg_id, _ in messages)
    assert [i for i, n in ids.items() if n > 1] == [], "a trade is in the stream twice"
    assert b_status.skipped + b_status.duplicates > 0, "B found A's trades in the stream"
    for coin in coins:
        first_ms = min(int(i.rsplit(":", 2)[1]) for i in _tape_ids(a, coin))
        stream = {m for _, m, t in messages if t.coin == coin}
        assert _truth_ids(exchange, coin, first_ms + 1) <= stream, f"{coin}: a trade is missing"


def test_bad_nats_credentials_are_one_clear_line_and_csv_keeps_growing(exchange, tmp_path):
    server = NatsServer(tmp_path, user="relay", password="right-pw").start()
    secret = tmp_path / "nats-password"
    secret.write_text("wrong-pw-1234\n")
    pipeline = Pipeline(
        exchange, tmp_path / "p", coins="BTC", intervals="5s", nats_url=server.url,
        nats_user="relay", nats_password_file=str(secret),
    ).start()  # fmt: skip
    try:
        pipeline.wait_ready()
        wait_for(lambda: (s := _relay(pipeline)) and s.errors >= 3, 60, "relay retrying")
        rows = len(read_rows(pipeline.csv("BTC", "5s")))
        wait_for(
            lambda: len(read_rows(pipeline.csv("BTC", "5s"))) > rows + 1,
            30, "CSV rows while the sink refuses the relay",
        )  # fmt: skip
        status = _relay(pipeline)
    finally:
        code, output = pipeline.stop()
        server.stop()
    assert code == 0, output[-3000:]
    assert not status.nats.connected and "uthorization" in status.nats.last_error
    log = (pipeline.run_dir / "logs" / "relay.log").read_text()
    errors = [line for line in log.splitlines() if "event=sink_unavailable" in line]
    assert len(errors) == 1, errors
    assert "uthorization" in errors[0]
    everything = log + output + (pipeline.run_dir / "relay-status.json").read_text()
    assert "wrong-pw-1234" not in everything


def test_bars_reach_postgres_written_while_it_was_down_and_upserts_are_idempotent(
    exchange, tmp_path
):
    import psycopg

    from hlstream.common.config import load_settings
    from hlstream.common.sinks import SinkSecrets
    from hlstream.services.relay.core import JsBar
    from hlstream.services.relay.postgres_io import PostgresSink
    from tests.support.servers import PostgresServer

    server = PostgresServer()
    pipeline = Pipeline(
        exchange, tmp_path / "p", coins="BTC", intervals="5s", postgres_dsn=server.dsn(),
        postgres_password=server.password,
    ).start()  # fmt: skip
    try:
        pipeline.wait_ready()
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "5s"))) >= 2, 60, "rows, db down")
        wait_for(lambda: (s := _relay(pipeline)) and s.postgres.last_error, 30, "db down seen")
        server.start()
        rows = read_rows(pipeline.csv("BTC", "5s"))

        def stored():
            with psycopg.connect(server.dsn(password=True)) as conn:
                return conn.execute(
                    "SELECT (extract(epoch FROM start_ts) * 1000)::bigint, open::text,"
                    " high::text, low::text, close::text, volume::text, exact, revision, trades"
                    " FROM hlstream_bars WHERE coin = 'BTC' AND interval = '5s'"
                    " ORDER BY start_ts DESC"
                ).fetchall()

        def stored_yet():
            try:
                return stored()
            except psycopg.errors.UndefinedTable:
                return []  # the relay has not created the schema yet

        got = wait_for(lambda: len(s := stored_yet()) >= len(rows) and s, 60, "bars in postgres")
        wait_for(lambda: _relay(pipeline).postgres.connected, 10, "status: connected")
    finally:
        code, output = pipeline.stop()
    assert code == 0, output[-3000:]
    by_start = {row[0]: row for row in got}
    assert len(by_start) == len(got)
    for start, o, h, low, c, v in rows:
        assert by_start[start][:6] == (start, o, h, low, c, v)
    truth = Counter(t["time"] // 5_000 * 5_000 for t in exchange.trades("BTC"))
    counted = {start: row[8] for start, row in by_start.items() if row[6]}
    assert counted and None not in counted.values(), by_start
    assert counted == {start: truth[start] for start in counted}
    settings = load_settings(environ={"HLSTREAM_POSTGRES_DSN": server.dsn(password=True)})
    sink = PostgresSink(settings, SinkSecrets())
    try:
        sink.connect()
        start, o, h, low, c, v = rows[0]
        start += 10**9  # a window the relay has not written
        bar = JsBar("BTC", "5s", start, o, h, low, c, v, None, True, 0)
        sink.upsert([bar, bar])
        assert stored()[0][6:8] == (True, 0), "a re-sent bar changes nothing"
        sink.upsert([msgspec.structs.replace(bar, exact=False)])
        assert stored()[0][6:8] == (True, 0), "an inexact bar never replaces an exact one"
        sink.upsert([msgspec.structs.replace(bar, close="1.5")])
        assert stored()[0][4:8] == ("1.5", v, True, 1), "a revised bar bumps revision"
    finally:
        sink.close()
        server.remove()
