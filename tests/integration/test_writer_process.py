"""The writer as a real process: backfill from the sim exchange's /info, bars over ZMQ, SIGTERM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from hlstream.common.messages import Bar, Envelope, encode_message
from hlstream.common.timebucket import format_window
from hlstream.sim.exchange import FakeExchange
from tests.support.exchange import exchange_fixture
from tests.support.procs import terminate
from tests.support.wait import wait_for

ROOT = Path(__file__).parents[2]
M = 60_000
S5 = 5_000


def stub_price(t: int) -> int:
    return 100 + (t // M) % 7


def stub_trades(t: int) -> list[tuple[int, str, str]]:
    """(time_ms, px, sz) of trades whose 1m candle at `t` is `stub_row(t)`."""
    p = stub_price(t)
    return [
        (t + 1_000, f"{p}.0", "0.5"),
        (t + 2_000, f"{p + 1}.0", "0.5"),
        (t + 3_000, f"{p - 1}.0", "0.25"),
        (t + 4_000, f"{p}.25", "0.25"),
    ]


def stub_row(t: int) -> str:
    p = stub_price(t)
    return f"{format_window(t)},{p}.0,{p + 1}.0,{p - 1}.0,{p}.25,1.5"


def add_stub_minutes(fake: FakeExchange) -> None:
    """BTC trades in every 1m window from 10 minutes back to 10 minutes ahead, each window's
    candle being `stub_row`."""
    now_ms = int(time.time() * 1000)
    first = now_ms - now_ms % M - 10 * M
    fake.add_trades("BTC", [trade for k in range(21) for trade in stub_trades(first + k * M)])


exchange = exchange_fixture(
    coins=["BTC"], spot=[], history_hours=0, paused=True, prepare=add_stub_minutes
)


def writer_status(tmp_path: Path) -> dict[str, Any] | None:
    """The writer's last heartbeat file, None until it exists."""
    path = tmp_path / "run" / "writer-status.json"
    return json.loads(path.read_text()) if path.exists() else None


def omit(exchange: FakeExchange, start_ms: int) -> None:
    """Make the exchange omit the 1m candle at `start_ms`: nobody traded in that window."""
    assert exchange.drop_trades("BTC", start_ms, start_ms + M) > 0


def writer_env(tmp_path: Path, info_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HLSTREAM_")}
    env.update(
        HLSTREAM_DATA_DIR=str(tmp_path / "data"),
        HLSTREAM_RUN_DIR=str(tmp_path / "run"),
        HLSTREAM_COINS="BTC",
        HLSTREAM_INTERVALS="5s,1m",
        HLSTREAM_INFO_URL=info_url,
        HLSTREAM_BACKFILL_HOURS="0.05",
        HLSTREAM_BACKOFF_BASE_SECONDS="0.05",
        HLSTREAM_BACKOFF_CAP_SECONDS="0.2",
    )
    env.update(extra)
    return env


def start_writer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hlstream.services.writer"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_ready(proc: subprocess.Popen[bytes], run_dir: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (run_dir / "writer-status.json").exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited {proc.returncode}: {proc.stderr.read()!r}")
        assert time.monotonic() < deadline, "writer never became ready"
        time.sleep(0.05)


def stop_writer(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    code, err, _stopped = terminate(proc)
    return code, err.decode()


def csv_rows(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0] == "Datetime,Open,High,Low,Close,Volume"
    return lines[1:]


def send_bar(dealer: zmq.Socket[Any], bar: Bar, seq: int) -> None:
    dealer.send_multipart([b"bar", encode_message(Envelope("test", seq), bar)])


def recv_ack(dealer: zmq.Socket[Any], timeout_ms: int = 10_000) -> dict[str, Any]:
    assert dealer.poll(timeout_ms), "no ack"
    kind, payload = dealer.recv_multipart()
    assert kind == b"ack"
    data = msgpack.unpackb(payload, raw=False)
    assert isinstance(data, dict)
    return data


def no_ack(dealer: zmq.Socket[Any], timeout_ms: int = 500) -> bool:
    return not dealer.poll(timeout_ms)


def make_bar(interval: str, start_ms: int, close: str, complete: bool = True) -> Bar:
    return Bar("BTC", interval, start_ms, "50.0", "60.0", "40.0", close, "2.5", 7, complete, "ws")


def test_writer_backfills_writes_acks_and_stops_cleanly(
    exchange: FakeExchange, tmp_path: Path
) -> None:
    before_ms = int(time.time() * 1000)
    proc = start_writer(writer_env(tmp_path, exchange.info_url))
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        wait_ready(proc, tmp_path / "run")
        after_ms = int(time.time() * 1000)
        path_1m = tmp_path / "data" / "btc_1m_data.csv"
        rows = csv_rows(path_1m)
        # Backfill: every finished 1m window from ~3 minutes back, exactly the exchange's candles.
        first_start = (before_ms - 180_000) - (before_ms - 180_000) % M
        last_start = after_ms - after_ms % M - M
        assert len(rows) >= 2
        starts = [first_start + k * M for k in range(len(rows))]
        assert rows == [stub_row(t) for t in starts]
        assert starts[-1] in {last_start, last_start - M}
        assert exchange.rest_requests()[0]["type"] == "candleSnapshot"
        assert exchange.rest_requests()[0]["req"]["coin"] == "BTC"
        last = starts[-1]

        dealer.connect(f"ipc://{tmp_path / 'run' / 'writer.sock'}")
        # 5s interval: first bar, a duplicate, then a hole of two windows.
        s0 = 1_700_000_000_000
        send_bar(dealer, make_bar("5s", s0, "45.5"), 1)
        assert recv_ack(dealer)["start_ms"] == s0
        send_bar(dealer, make_bar("5s", s0, "45.5"), 2)
        ack = recv_ack(dealer)
        assert (ack["type"], ack["coin"], ack["interval"], ack["start_ms"]) == (
            "ack",
            "BTC",
            "5s",
            s0,
        )
        send_bar(dealer, make_bar("5s", s0 + 3 * S5, "41.0"), 3)
        assert recv_ack(dealer)["start_ms"] == s0 + 3 * S5

        # 1m: a hole whose first window the exchange omits -> carry-forward, then REST candle.
        omit(exchange, last + M)
        send_bar(dealer, make_bar("1m", last + 3 * M, "55.0"), 4)
        assert recv_ack(dealer)["start_ms"] == last + 3 * M
        # A partial bar that REST knows is replaced by the exchange candle...
        # (the partial bar saw a subset of the window's trades, so the candle covers it)
        p4 = stub_price(last + 4 * M)
        seen = Bar(
            "BTC",
            "1m",
            last + 4 * M,
            f"{p4}.0",
            f"{p4}.0",
            f"{p4}.0",
            f"{p4}.0",
            "0.5",
            1,
            False,
            "ws",
        )
        send_bar(dealer, seen, 5)
        assert recv_ack(dealer)["start_ms"] == last + 4 * M
        # ...and one it does not know is written as is.
        omit(exchange, last + 5 * M)
        send_bar(dealer, make_bar("1m", last + 5 * M, "44.0", complete=False), 6)
        assert recv_ack(dealer)["start_ms"] == last + 5 * M

        # Malformed frames: counted, dropped, never acked, never fatal.
        dealer.send_multipart([b"bar", b"\xc1garbage"])
        send_bar(
            dealer, Bar("ETH", "1m", last, "1.0", "1.0", "1.0", "1.0", "0.0", 0, True, "ws"), 7
        )
        assert no_ack(dealer)
        assert proc.poll() is None
        status = wait_for(
            lambda: (s := writer_status(tmp_path)) and s["counters"]["malformed"] == 2 and s,
            10,
            "the writer's heartbeat counting both malformed frames",
        )
    finally:
        dealer.close()
        context.term()
        code, err = stop_writer(proc)
        sys.stderr.write(err)
    assert code == 0, err
    assert "event=stopped" in err

    rows_5s = csv_rows(tmp_path / "data" / "btc_5s_data.csv")
    assert rows_5s == [
        f"{format_window(s0)},50.0,60.0,40.0,45.5,2.5",
        f"{format_window(s0 + S5)},45.5,45.5,45.5,45.5,0.0",
        f"{format_window(s0 + 2 * S5)},45.5,45.5,45.5,45.5,0.0",
        f"{format_window(s0 + 3 * S5)},50.0,60.0,40.0,41.0,2.5",
    ]
    p = stub_price(last)
    assert csv_rows(path_1m)[-5:] == [
        f"{format_window(last + M)},{p}.25,{p}.25,{p}.25,{p}.25,0.0",
        stub_row(last + 2 * M),
        f"{format_window(last + 3 * M)},50.0,60.0,40.0,55.0,2.5",
        stub_row(last + 4 * M),
        f"{format_window(last + 5 * M)},50.0,60.0,40.0,44.0,2.5",
    ]
    counters = status["counters"]
    assert counters["malformed"] == 2
    assert counters["duplicates"] == 1
    assert counters["holes_repaired"] == 2
    assert counters["partial_written"] == 1
    assert status["files"]["btc_1m_data.csv"]["last_start_ms"] == last + 5 * M
    assert "event=partial_bar_written" in err


def test_writer_starts_when_rest_is_down(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    proc = start_writer(writer_env(tmp_path, f"http://127.0.0.1:{dead_port}/info"))
    try:
        wait_ready(proc, tmp_path / "run")
    finally:
        code, err = stop_writer(proc)
    assert code == 0, err
    assert "event=backfill_failed" in err
    assert not (tmp_path / "data" / "btc_1m_data.csv").exists(), "no row, so no file yet"


def test_bad_interval_exits_78_with_one_line(tmp_path: Path) -> None:
    env = writer_env(tmp_path, "http://127.0.0.1:9/info", HLSTREAM_INTERVALS="7x")
    result = subprocess.run(
        [sys.executable, "-m", "hlstream.services.writer"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 78
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert "event=config_error" in lines[0] and "7x" in lines[0]
