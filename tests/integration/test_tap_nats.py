"""`hlstream tap --nats URL` and `Tap.nats` against a real nats-server filled by the relay:
the same lines as the local tap for the same trades, bars as in the CSV file, and one clear
line for each way nothing can arrive (tests/support/servers.py starts the servers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from hlstream.common.messages import Trade
from hlstream.common.tape.readers_io import read_since
from hlstream.common.timebucket import format_window
from hlstream.services.relay.files_io import read_relay_status
from hlstream.tap import Tap
from tests.support.exchange import exchange_fixture
from tests.support.net import free_port
from tests.support.pipeline import Pipeline, read_rows
from tests.support.servers import NatsServer, stream_messages
from tests.support.wait import wait_for

exchange = exchange_fixture(coins=["BTC"], rate_per_coin=15.0, seed=11, history_hours=0.1)


def _tape_tids(pipeline: Pipeline) -> list[int]:
    return [r.tid for r, _ in read_since(pipeline.data_dir, "BTC", []) if isinstance(r, Trade)]


def test_nats_tap_prints_what_the_local_tap_prints(exchange, tmp_path):
    server = NatsServer(tmp_path).start()
    pipeline = Pipeline(
        exchange, tmp_path / "p", coins="BTC", intervals="1s", nats_url=server.url
    ).start()
    try:
        pipeline.wait_ready()
        wait_for(lambda: len(read_rows(pipeline.csv("BTC", "1s"))) >= 3, 60, "three 1s rows")
        exchange.pause_trades(True)
        rows = read_rows(pipeline.csv("BTC", "1s"))[:3]
        tids = _tape_tids(pipeline)
        wait_for(
            lambda: len(stream_messages(server.url, "HL_TRADES", "hl.trades.BTC")) >= len(tids),
            60, "the tape in HL_TRADES",
        )  # fmt: skip
        wait_for(lambda: read_relay_status(pipeline.run_dir).bars_published >= 3, 30, "bars")
        count = ("--count", str(len(tids)), "--timeout", "30")
        local = pipeline.cli("tap", "trades", "BTC", "--since", "1h", *count)
        remote = pipeline.cli("tap", "trades", "BTC", "--since", "1h", "--nats", server.url, *count)
        bars = pipeline.cli(
            "tap", "bars", "BTC", "--interval", "1s", "--nats", server.url, "--since", "1h",
            "--count", "3", "--timeout", "30",
        )  # fmt: skip
        api = list(Tap.nats(server.url, ["trade.BTC|"], timeout_ms=1000, since_ms=0))
    finally:
        code, output = pipeline.stop()
        server.stop()
    assert code == 0, output[-3000:]
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout.splitlines() == local.stdout.splitlines()
    assert len(remote.stdout.splitlines()) == len(tids) > 20
    assert [t["tid"] for m in api for t in m.data["trades"]] == tids
    assert {m.event for m in api} == {"replay"} and {m.topic for m in api} == {"trade.BTC|"}
    assert bars.returncode == 0, bars.stderr
    lines = bars.stdout.splitlines()
    times = [r.ts_ms for r, _ in read_since(pipeline.data_dir, "BTC", []) if isinstance(r, Trade)]
    for at, (line, (start, o, h, low, c, v)) in enumerate(zip(lines, rows, strict=True)):
        # The first window began before ingest: its count and state are the relay's call.
        n = sum(start <= t < start + 1000 for t in times) if at else line.split()[-3][2:]
        state = "complete" if at else line.split()[-2]
        stamp = format_window(start)
        assert line == f"{stamp}.000 BTC 1s O={o} H={h} L={low} C={c} V={v} n={n} {state} src=-"


def _tap(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hlstream.cli", "tap", *args, "--nats", url],
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _error(url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = _tap(url, *args, env=env)
    out, err = proc.communicate(timeout=30)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    return proc.returncode, err.strip()


def test_each_way_nothing_can_arrive_is_one_line_and_ctrl_c_exits_cleanly(tmp_path):
    server = NatsServer(tmp_path, user="reader", password="right-pw").start()
    good = {"HLSTREAM_NATS_USER": "reader", "HLSTREAM_NATS_PASSWORD": "right-pw"}
    bad = {"HLSTREAM_NATS_USER": "reader", "HLSTREAM_NATS_PASSWORD": "wrong-pw-1234"}
    try:
        unreachable = f"nats://127.0.0.1:{free_port()}"
        assert _error(unreachable, "trades", "BTC") == (
            1, f"hlstream tap: cannot reach NATS at {unreachable}: "
            f"[Errno 111] Connect call failed ('127.0.0.1', {unreachable.rsplit(':', 1)[1]})",
        )  # fmt: skip
        code, err = _error(server.url, "trades", "BTC", env=bad)
        assert code == 1 and "refused the credentials" in err and "wrong-pw" not in err
        code, err = _error(server.url.replace("//", "//reader:wrong-pw-1234@"), "trades")
        assert code == 1 and "wrong-pw" not in err and "//***@127.0.0.1" in err
        assert _error(server.url, "trades", "BTC", env=good) == (
            1, f"hlstream tap: no HL_TRADES stream at {server.url}: is a relay running?"
        )  # fmt: skip
        code, err = _error(server.url, "bars", "BTC", "--interval", "7m", env=good)
        assert code == 2 and "interval '7m' does not divide a day evenly" in err
        code, err = _error(server.url, "book", "BTC", env=good)
        assert code == 2 and "JetStream holds trades, gaps, bars only" in err
        _add_streams(server.url)
        proc = _tap(server.url, "trades", "BTC", env=good)
        wait_for(
            lambda: _consumers(server.url) or proc.poll() is not None, 30, "the tap's consumer"
        )
        assert proc.poll() is None, proc.communicate()  # past connecting: waiting for trades
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert (proc.returncode, out, err) == (0, "", "")
    finally:
        server.stop()


def _add_streams(url: str) -> None:
    import asyncio

    import nats

    from hlstream.services.relay.nats_io import stream_configs

    async def add() -> None:
        nc = await nats.connect(url, user="reader", password="right-pw")
        for config in stream_configs(1, 1, 60.0):
            await nc.jetstream().add_stream(config)
        await nc.close()

    asyncio.run(add())


def _consumers(url: str) -> int:
    import asyncio

    import nats

    async def count() -> int:
        nc = await nats.connect(url, user="reader", password="right-pw")
        try:
            return len(await nc.jetstream().consumers_info("HL_TRADES"))
        finally:
            await nc.close()

    return asyncio.run(count())


@pytest.mark.parametrize("kind", ["trades", "bars"])
def test_since_must_be_a_duration(kind, tmp_path):
    proc = _tap("nats://127.0.0.1:1", kind, "BTC", "--since", "yesterday")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "'yesterday' is not a duration" in err
