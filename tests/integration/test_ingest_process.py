"""Integration: `python -m hlstream.services.ingest` against a local fake exchange (WS + /info)
and real ZeroMQ over ipc. No internet; each scenario runs a few seconds.

/info is the sim exchange's (`hlstream.sim.exchange.FakeExchange`); the websocket side is a
scripted server here, since these scenarios need exact frames on each connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from hlstream.common.status_io import read_status
from hlstream.common.tape.format import HEADER, HEADER_BYTES, segment_day, segment_path
from hlstream.sim import exchange as sim
from tests.support.bus import Bus
from tests.support.procs import terminate

ROOT = Path(__file__).resolve().parents[2]
BASE_MS = 1_785_648_520_000


def ws_trade(coin: str, tid: int, offset_ms: int) -> dict[str, Any]:
    return {
        "coin": coin,
        "side": "B" if tid % 2 else "A",
        "px": f"{100 + tid}.5",
        "sz": "0.01",
        "time": BASE_MS + offset_ms,
        "hash": f"0x{tid:064x}",
        "tid": tid,
        "users": ["0x1", "0x2"] if tid == 12 else users_of(tid),  # 12: malformed, dropped
    }


def users_of(tid: int) -> list[str]:
    return [f"0x{tid:040x}", f"0x{tid + 1:040X}"]


def trades_text(trades: list[dict[str, Any]]) -> str:
    return json.dumps({"channel": "trades", "data": trades})


# ---- fake exchange: scripted websocket, sim /info ----------------------------------------


@dataclass
class ScriptedWs:
    """Scripted websocket server: `script(conn_index, conn, subscribed_coins)` drives each link."""

    script: Callable[[int, ServerConnection, list[str]], None]
    connections: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, conn: ServerConnection) -> None:
        with self.lock:
            index = len(self.connections)
            self.connections.append(time.monotonic())
        coins: list[str] = []
        try:
            while len(coins) < 2:
                message = json.loads(conn.recv(timeout=5))
                if message.get("method") == "subscribe":
                    coin = message["subscription"]["coin"]
                    coins.append(coin)
                    ack = {"channel": "subscriptionResponse", "data": message}
                    conn.send(json.dumps(ack))
            self.script(index, conn, coins)
        except (ConnectionClosed, TimeoutError):
            pass


def answer_pings(conn: ServerConnection, seconds: float) -> None:
    """Behave like a live server for a while: pong every JSON ping."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = conn.recv(timeout=0.2)
        except TimeoutError:
            continue
        if json.loads(message).get("method") == "ping":
            conn.send('{"channel":"pong"}')


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def info_server() -> Iterator[sim.FakeExchange]:
    """The sim exchange, for its POST /info: meta lists BTC and ETH, spotMeta PURR/USDC."""
    fake = sim.FakeExchange(coins=["BTC", "ETH"], spot=["PURR/USDC"], history_hours=0)
    fake.pause_trades(True)
    with fake:
        yield fake


def start_ws(exchange: ScriptedWs) -> tuple[str, Callable[[], None]]:
    server = serve(exchange.handle, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.socket.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws", server.shutdown


def start_ingest(
    run_dir: Path, ws_url: str, info_url: str, coins: str = "BTC,ETH"
) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update(
        HLSTREAM_WS_URL=ws_url,
        HLSTREAM_INFO_URL=info_url,
        HLSTREAM_COINS=coins,
        HLSTREAM_RUN_DIR=str(run_dir),
        HLSTREAM_DATA_DIR=str(run_dir.parent / "data"),
        HLSTREAM_STALE_SECONDS="3",
        HLSTREAM_BACKOFF_BASE_SECONDS="0.05",
        HLSTREAM_BACKOFF_CAP_SECONDS="0.5",
        HLSTREAM_TAPE_DAYS="36500",  # the scripted trades are months old: keep their tape
    )
    return subprocess.Popen(
        [sys.executable, "-m", "hlstream.services.ingest"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_process(proc: subprocess.Popen[str], timeout_s: float = 5.0) -> tuple[int, str]:
    code, stderr, stopped = terminate(proc, timeout_s)
    if not stopped:
        pytest.fail(f"ingest did not stop on SIGTERM; stderr:\n{stderr}")
    return code, stderr


# ---- scenarios ---------------------------------------------------------------------------

BTC_REPLAY = [ws_trade("BTC", 11, 300), ws_trade("BTC", 12, 100), ws_trade("BTC", 13, 200)]
BTC_LIVE = [ws_trade("BTC", 14, 400), ws_trade("BTC", 15, 400)]
ETH_REPLAY = [ws_trade("ETH", 21, 100), ws_trade("ETH", 22, 150)]
BTC_NEW = [ws_trade("BTC", 16, 900)]


def test_streams_dedupes_replay_survives_garbage_and_stops_cleanly(
    run_dir: Path, info_server: sim.FakeExchange
) -> None:
    go = threading.Event()
    second_done = threading.Event()

    def script(index: int, conn: ServerConnection, coins: list[str]) -> None:
        go.wait(10)
        if index == 0:
            conn.send(trades_text(BTC_REPLAY))
            conn.send(trades_text(ETH_REPLAY))
            conn.send("not json{")
            conn.send('{"channel":"error","data":"Already subscribed: BTC"}')
            conn.send(trades_text(BTC_LIVE))
            time.sleep(0.3)
            conn.close()  # server drops the link: ingest must reconnect
        else:
            # Every subscribe replays recent trades again: all of them are already known.
            conn.send(trades_text(BTC_REPLAY + BTC_LIVE))
            conn.send(trades_text(ETH_REPLAY))
            conn.send(trades_text(BTC_NEW))
            second_done.set()
            answer_pings(conn, 10)

    exchange = ScriptedWs(script)
    info_server.fail_rest(503, 1)
    ws_url, shutdown = start_ws(exchange)
    bus = Bus(run_dir)
    proc = start_ingest(run_dir, ws_url, info_server.info_url)
    try:
        # Wait for a heartbeat so the SUB is connected before any trade is sent.
        assert bus.poll_until(lambda: bool(bus.of_type("status")), 15), "no status heartbeat"
        go.set()
        expected = {
            (t["coin"], t["time"], t["tid"]) for t in BTC_REPLAY + BTC_LIVE + ETH_REPLAY + BTC_NEW
        }
        assert bus.poll_until(lambda: set(bus.trade_keys()) == expected, 15)
        assert second_done.wait(5)
        bus.poll_until(lambda: False, 1.0)  # anything published late would show up now

        keys = bus.trade_keys()
        assert len(keys) == len(set(keys)), "a trade was published twice"
        assert bus.of_type("gap") == []  # the second replay overlapped
        assert len(exchange.connections) == 2
        assert len(info_server.rest_requests()) >= 3  # one 503, then meta + spotMeta
        assert proc.poll() is None, "ingest died on a malformed frame"
        first = bus.of_type("trades")[0]
        assert first["coin"] == "BTC" and isinstance(first["recv_ms"], int)
        assert first["trades"][0] == {
            "coin": "BTC",
            "side": "buy",
            "price": "111.5",
            "size": "0.01",
            "ts_ms": BASE_MS + 300,
            "tid": 11,
            "hash": f"0x{11:064x}",
            "users": users_of(11),
        }
        assert "users" not in first["trades"][1]  # tid 12's were malformed: the trade is kept

        started = time.monotonic()
        code, stderr = stop_process(proc)
        assert code == 0, stderr
        assert time.monotonic() - started < 2.5
        tape = sorted((run_dir.parent / "data" / "tape").glob("*/*.csv"))
        assert tape and all(path.stat().st_size > 0 for path in tape), "trades are on the tape"
        btc = segment_path(run_dir.parent / "data", "BTC", segment_day(BASE_MS)).read_text()
        assert btc.startswith(HEADER)
        assert f",{11},buy,111.5,0.01,0x{11:064x},,,{','.join(users_of(11))}\n" in btc
        assert f",{12},sell,112.5,0.01,0x{12:064x},,,,\n" in btc
        status = read_status(run_dir, "ingest")  # final heartbeat
        assert status is not None and status.feed is not None
        assert status.feed.connected is False
        assert (
            status.counter("malformed"),
            status.counter("duplicates"),
            status.counter("trades"),
        ) == (1, 7, 8)
        assert status.feed.last_trade_ms == {"BTC": BASE_MS + 900, "ETH": BASE_MS + 150}
        assert "event=ws_reconnect" in stderr
        assert "event=ws_malformed" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        bus.close()
        shutdown()


def test_restart_reports_gap_when_replay_does_not_overlap(
    run_dir: Path, info_server: sim.FakeExchange
) -> None:
    go = [threading.Event(), threading.Event()]  # one per process run

    def script(index: int, conn: ServerConnection, coins: list[str]) -> None:
        go[index].wait(10)
        if index == 0:
            conn.send(trades_text(BTC_REPLAY))
        else:
            conn.send(trades_text(BTC_REPLAY[:1]))  # overlaps what BTC saw before: no gap
        conn.send(trades_text([ws_trade("ETH", 30 + index, 1000 * (index + 1))]))
        answer_pings(conn, 10)

    exchange = ScriptedWs(script)
    ws_url, shutdown = start_ws(exchange)
    bus = Bus(run_dir)
    try:
        sessions: set[str] = set()
        for run in range(2):
            proc = start_ingest(run_dir, ws_url, info_server.info_url)
            try:
                # A heartbeat of the new process proves the SUB reconnected to it.
                assert bus.poll_until(
                    lambda: any(m["session"] not in sessions for m in bus.of_type("status")), 15
                )
                go[run].set()
                assert bus.poll_until(lambda n=run: len(bus.of_type("trades")) >= 2 + n * 1, 10)
                bus.poll_until(lambda: False, 0.5)
            finally:
                code, stderr = stop_process(proc)
            assert code == 0, stderr
            bus.poll_until(lambda: False, 0.3)
            sessions.update(m["session"] for m in bus.of_type("status"))

        keys = bus.trade_keys()
        assert len(keys) == len(set(keys)) == 5  # dedupe state survived the restart
        gaps = bus.of_type("gap")
        assert [(g["coin"], g["from_ms"], g["to_ms"]) for g in gaps] == [
            ("ETH", BASE_MS + 1000, BASE_MS + 2000)
        ]
        assert gaps[0]["reason"] == "replay_no_overlap"
    finally:
        bus.close()
        shutdown()


@pytest.mark.parametrize(
    ("coins", "message"),
    [
        ("BTC,NOPE", "unknown coin 'NOPE': the exchange lists no such perp or spot coin"),
        ("BTCC,ETH", "unknown coin 'BTCC': did you mean BTC?"),
    ],
)
def test_unknown_coin_exits_78_with_one_line_error(
    run_dir: Path, info_server: sim.FakeExchange, coins: str, message: str
) -> None:
    proc = start_ingest(run_dir, "ws://127.0.0.1:9/ws", info_server.info_url, coins=coins)

    _, stderr = proc.communicate(timeout=15)

    assert proc.returncode == 78
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert "event=config_error" in errors[0]
    assert message in errors[0]


def test_zombie_feed_is_replaced_within_stale_seconds_despite_a_torn_tape(
    run_dir: Path, info_server: sim.FakeExchange
) -> None:
    silent_since: list[float] = []
    release = threading.Event()

    def script(index: int, conn: ServerConnection, coins: list[str]) -> None:
        if index == 0:
            conn.send(trades_text(BTC_REPLAY))
            silent_since.append(time.monotonic())
            release.wait(15)  # open TCP, no frames, no pongs: a zombie
        else:
            answer_pings(conn, 5)

    exchange = ScriptedWs(script)
    ws_url, shutdown = start_ws(exchange)
    run_dir.mkdir(mode=0o700)
    torn = segment_path(run_dir.parent / "data", "BTC", segment_day(BASE_MS))
    torn.parent.mkdir(parents=True)
    torn.write_bytes(HEADER_BYTES + b"T,BTC,17")  # a crash mid-line: cut on start, logged
    proc = start_ingest(run_dir, ws_url, info_server.info_url)
    try:
        deadline = time.monotonic() + 20
        while len(exchange.connections) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(exchange.connections) == 2, "no reconnect after the feed went silent"
        assert exchange.connections[1] - silent_since[0] < 3 + 2.0
        code, stderr = stop_process(proc)
        assert code == 0, stderr
        assert "event=ws_stale" in stderr
        assert "event=tape_torn_tail_cut" in stderr
        assert torn.read_bytes().startswith(HEADER_BYTES) and b"T,BTC,17\n" not in torn.read_bytes()
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
        shutdown()


def test_a_stop_while_the_listing_is_unreachable_starts_no_link(run_dir: Path) -> None:
    proc = start_ingest(run_dir, "ws://127.0.0.1:9/ws", "http://127.0.0.1:9/info")

    def retrying() -> bool:  # its heartbeat counts the listing's failed requests
        status = read_status(run_dir, "ingest")
        return status is not None and status.rest is not None and status.rest.failures >= 2

    deadline = time.monotonic() + 20
    while not retrying() and time.monotonic() < deadline:
        time.sleep(0.05)

    code, stderr = stop_process(proc)

    assert code == 0, stderr
    assert "event=meta_unavailable" in stderr, "it was retrying the listing"
    assert "event=links_planned" not in stderr and "event=ws_connect" not in stderr
