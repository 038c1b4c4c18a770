"""Bus security: beyond loopback only with CURVE; an unauthenticated client gets nothing."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import zmq

from hlstream.common.bus_io import Publisher, curve_keys, subscribe_socket
from hlstream.common.config import load_settings
from hlstream.common.errors import ConfigError
from hlstream.common.messages import TradeBatch
from hlstream.tap import Tap
from tests.support.net import free_port


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "bus.key"
    result = subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "curve-keygen", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    return path


def test_non_loopback_bind_without_curve_is_refused():
    with pytest.raises(ConfigError, match="CURVE"):
        load_settings(environ={"HLSTREAM_BARS_ENDPOINT": "tcp://0.0.0.0:5999"})


def test_non_loopback_bind_with_curve_key_is_allowed(secret_file):
    settings = load_settings(
        environ={
            "HLSTREAM_BARS_ENDPOINT": "tcp://0.0.0.0:5999",
            "HLSTREAM_CURVE_SECRET_FILE": str(secret_file),
        }
    )
    assert curve_keys(settings) is not None


def test_bad_key_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("short\n")
    with pytest.raises(ConfigError, match="40-character"):
        load_settings(environ={"HLSTREAM_CURVE_SECRET_FILE": str(bad)})


def test_keygen_refuses_to_overwrite(secret_file):
    result = subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "curve-keygen", str(secret_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 78 and "already exists" in result.stderr


def test_unauthenticated_subscriber_gets_nothing_and_keyed_tap_gets_everything(secret_file):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    settings = load_settings(environ={"HLSTREAM_CURVE_SECRET_FILE": str(secret_file)})
    keys = curve_keys(settings)
    context = zmq.Context()
    publisher = Publisher(context, endpoint, curve=keys)
    plain = subscribe_socket(context, endpoint, ["trade."])
    wrong_key = Tap(endpoint, ["trade."], timeout_ms=100, server_key=zmq.curve_keypair()[0])
    keyed = Tap(endpoint, ["trade."], timeout_ms=100, server_key=keys.public)
    try:
        received = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(received) < 3:
            publisher.publish("trade.BTC|", TradeBatch("BTC", 0, ()))
            message = keyed.receive()
            if message is not None:
                received.append(message)
        assert len(received) >= 3
        for _ in range(5):
            publisher.publish("trade.BTC|", TradeBatch("BTC", 0, ()))
        assert plain.poll(500) == 0, "a plain subscriber must receive nothing"
        assert wrong_key.receive() is None, "a client with the wrong server key gets nothing"
    finally:
        keyed.close()
        wrong_key.close()
        plain.close()
        publisher.close()
        context.term()


def test_whole_pipeline_runs_over_curve(secret_file, tmp_path):
    from hlstream.sim.exchange import FakeExchange
    from tests.support.pipeline import Pipeline, read_rows
    from tests.support.wait import wait_for

    fake = FakeExchange(coins=["BTC"], spot=[], rate_per_coin=5.0, seed=3, history_hours=0.01)
    fake.start()
    pipeline = Pipeline(
        fake,
        tmp_path,
        coins="BTC",
        intervals="5s",
        backfill_hours="0",
        curve_secret_file=str(secret_file),
    ).start()
    try:
        pipeline.wait_ready()
        wait_for(
            lambda: (
                pipeline.csv("BTC", "5s").exists()
                and len(read_rows(pipeline.csv("BTC", "5s"))) >= 1
            ),
            30,
            "a 5s row over CURVE",
        )
    finally:
        code, output = pipeline.stop()
        fake.stop()
    assert code == 0, output[-2000:]
