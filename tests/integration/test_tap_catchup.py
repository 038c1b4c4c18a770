"""A late-joining tap catches up from ingest's trade tape, then goes on live: across the seam
no trade is missing and none is repeated (services/ingest/replay.py, hlstream/tap.py CatchUpTap,
`hlstream tap trades --since`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from hlstream.common.clock import now_ms
from hlstream.common.messages import Trade
from hlstream.common.tape.readers_io import read_tape
from hlstream.sim.exchange import FakeExchange
from hlstream.tap import CatchUpTap, ReplayError, TapError, TapMessage
from tests.support.pipeline import Pipeline
from tests.support.wait import wait_for


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with FakeExchange(coins=["BTC", "ETH"], rate_per_coin=40.0, seed=3, history_hours=0.2) as fake:
        pipeline = Pipeline(
            fake, tmp_path_factory.mktemp("catchup"), coins="BTC,ETH", intervals="5s"
        )
        pipeline.start()
        try:
            pipeline.wait_ready()
            yield fake, pipeline
        finally:
            code, output = pipeline.stop()
    assert code == 0, output[-3000:]


def taped_since(pipeline: Pipeline, since_ms: int) -> int:
    """How many BTC trades on the tape are at least as old as `since_ms`."""
    records = read_tape(pipeline.data_dir, "BTC", 0, since_ms)
    return sum(1 for record in records if isinstance(record, Trade))


def _tids(messages: list[TapMessage]) -> list[int]:
    return [t["tid"] for m in messages if m.data.get("type") == "trades" for t in m.data["trades"]]


def test_catch_up_seam_has_no_gap_and_no_duplicate(running):
    fake, pipeline = running
    wait_for(lambda: taped_since(pipeline, now_ms() - 6_000) >= 100, 20, "6 s of tape to replay")
    for since_s in (2, 6):  # trades keep flowing (40/s per coin) while each tap catches up
        since = now_ms() - since_s * 1000
        tap = CatchUpTap(
            f"ipc://{pipeline.run_dir / 'trades.sock'}",
            f"ipc://{pipeline.run_dir / 'replay.sock'}",
            ["BTC"],
            since,
            timeout_ms=200,
        )
        got: list[TapMessage] = []
        deadline = time.monotonic() + 4
        try:
            while time.monotonic() < deadline:
                message = tap.receive()
                if message is not None:
                    got.append(message)
        finally:
            tap.close()
        replayed = [m for m in got if m.event == "replay"]
        live = [m for m in got if m.event != "replay"]
        assert _tids(replayed) and _tids(live), "both sides of the seam have trades"
        assert all(m.topic == "trade.BTC|" for m in got), {m.topic for m in got}
        tids = _tids(got)
        assert len(tids) == len(set(tids)), "a trade was delivered twice across the seam"
        last_ts = max(t["ts_ms"] for m in live for t in m.data["trades"])
        venue = {int(t["tid"]) for t in fake.trades("BTC") if since <= int(t["time"]) <= last_ts}
        # Everything the venue traded from `since` up to the last live trade, nothing missing
        # (a trade of the same ms after the last one seen may still be in flight).
        missing = venue - set(tids)
        assert all(
            int(t["time"]) == last_ts for t in fake.trades("BTC") if int(t["tid"]) in missing
        )
        assert set(tids) <= venue | {int(t["tid"]) for t in fake.trades("BTC")}


def test_hlstream_tap_since_prints_history_then_live(running):
    _fake, pipeline = running
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hlstream.cli",
            "tap",
            "trades",
            "ETH",
            "--since",
            "5s",
            "--json",
            "--timeout",
            "3",
        ],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    events = [line["event"] for line in lines]
    assert events[0] == "replay" and "replay" in events and events[-1] != "replay"
    first_live = next(i for i, e in enumerate(events) if e != "replay")
    assert "replay" not in events[first_live:], "history first, then live"
    tids = [t["tid"] for line in lines for t in line["trades"]]
    assert len(tids) == len(set(tids)) and all(line["coin"] == "ETH" for line in lines)


def test_catch_up_errors_are_one_line(running):
    _fake, pipeline = running
    bad = subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "tap", "bars", "--since", "5m"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 78 and "only `hlstream tap trades`" in bad.stderr
    with pytest.raises(TapError, match="nothing can arrive for coin 'DOGE'"):
        CatchUpTap(
            f"ipc://{pipeline.run_dir / 'trades.sock'}",
            f"ipc://{pipeline.run_dir / 'replay.sock'}",
            ["DOGE"],  # not streamed here: refused before any request
            now_ms() - 60_000,
        )
    tap = CatchUpTap(
        f"ipc://{pipeline.run_dir / 'trades.sock'}",
        f"ipc://{pipeline.run_dir / 'replay.sock'}",
        ["BTC"],
        now_ms() + 3_600_000,  # the replay server refuses a start in the future
        timeout_ms=200,
    )
    try:
        with pytest.raises(ReplayError, match="is not between 0 and now"):
            tap.receive()
    finally:
        tap.close()
