"""A tap on which nothing can arrive says why at once, from the CLI and from `hlstream.tap.Tap`.

The run dir is a real one in miniature: PUB sockets bound where ingest and the aggregator
bind them, and a writer status file saying which coins and intervals the instance streams.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from hlstream.common.clock import now_ms
from hlstream.common.status import FileStatus, StageStatus
from hlstream.common.status_io import write_status
from hlstream.tap import STATUS_FRESH_MS, CatchUpTap, Tap, TapError

COINS = ("BTC", "kPEPE")
INTERVALS = ("5s", "1m")
FAIL_FAST_S = 1.0  # a missing path is a stat() away: well under the old 3 s wait


@pytest.fixture
def run_dir(tmp_path):
    """A run dir with live trades and bars sockets and a fresh writer status."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    context = zmq.Context()
    publishers = []
    for name in ("trades.sock", "bars.sock"):
        publisher = context.socket(zmq.PUB)
        publisher.bind(f"ipc://{path / name}")
        publishers.append(publisher)
    _write_writer_status(path, now_ms())
    yield path
    for publisher in publishers:
        publisher.close(linger=0)
    context.term()


def _write_writer_status(run_dir: Path, ts_ms: int) -> None:
    files = {
        f"{coin.lower()}_{interval}_data.csv": FileStatus(coin, interval, None)
        for coin in COINS
        for interval in INTERVALS
    }
    write_status(run_dir, StageStatus("writer", ts_ms, os.getpid(), "s", {}, files=files))


def _tap_cli(run_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(
        os.environ,
        HLSTREAM_RUN_DIR=str(run_dir),
        HLSTREAM_DATA_DIR=str(run_dir.parent / "data"),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "tap", *args, "--timeout", "5"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---- the Python Tap ----------------------------------------------------------------------


def test_python_tap_fails_at_once_when_the_run_dir_does_not_exist(tmp_path):
    started = time.monotonic()
    with pytest.raises(TapError, match=r"run dir .*nowhere does not exist"):
        Tap(f"ipc://{tmp_path / 'nowhere' / 'trades.sock'}", ["trade.BTC|"], timeout_ms=100)
    assert time.monotonic() - started < FAIL_FAST_S


def test_python_tap_fails_at_once_when_no_socket_is_there(tmp_path):
    with pytest.raises(TapError, match="no socket trades.sock"):
        Tap(f"ipc://{tmp_path / 'trades.sock'}", ["trade.BTC|"], timeout_ms=100)


def test_python_tap_refuses_a_wrong_case_coin(run_dir):
    with pytest.raises(TapError, match=r"did you mean kPEPE\?"):
        Tap(f"ipc://{run_dir / 'trades.sock'}", ["trade.KPEPE|"])


def test_python_tap_refuses_a_coin_the_instance_does_not_stream(run_dir):
    with pytest.raises(TapError, match=f"the instance running in {run_dir} has coins BTC, kPEPE"):
        Tap(f"ipc://{run_dir / 'trades.sock'}", ["trade.DOGE|"])


def test_python_tap_refuses_malformed_and_unconfigured_intervals(run_dir):
    endpoint = f"ipc://{run_dir / 'bars.sock'}"
    with pytest.raises(TapError, match="unknown interval '7x'"):
        Tap(endpoint, ["bar.7x."])
    with pytest.raises(TapError, match="has intervals 5s, 1m"):
        Tap(endpoint, ["bar.1h.BTC|"])


def test_catch_up_tap_refuses_a_coin_the_instance_does_not_stream(run_dir):
    with pytest.raises(TapError, match="nothing can arrive for coin 'DOGE'"):
        CatchUpTap(
            f"ipc://{run_dir / 'trades.sock'}", f"ipc://{run_dir / 'replay.sock'}", ["DOGE"], 0
        )


def test_python_tap_on_what_the_instance_streams_opens(run_dir):
    tap = Tap(f"ipc://{run_dir / 'bars.sock'}", ["bar.5s.kPEPE|", "bar.1m."], timeout_ms=10)
    try:
        assert tap.receive() is None
    finally:
        tap.close()


def test_a_stale_writer_status_is_not_trusted(run_dir):
    _write_writer_status(run_dir, now_ms() - 2 * STATUS_FRESH_MS)  # an earlier run's coins

    tap = Tap(f"ipc://{run_dir / 'trades.sock'}", ["trade.DOGE|"], timeout_ms=10)

    tap.close()


# ---- hlstream tap ------------------------------------------------------------------------


def test_cli_tap_says_did_you_mean_for_a_wrong_case_coin(run_dir):
    result = _tap_cli(run_dir, "trades", "KPEPE")

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "hlstream tap: nothing can arrive for coin 'KPEPE': did you mean kPEPE? "
        "(coin names are case-sensitive)"
    ]


def test_cli_tap_gives_the_parse_error_for_a_malformed_interval(run_dir):
    result = _tap_cli(run_dir, "bars", "BTC", "--interval", "7x")

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "hlstream tap: nothing can arrive: unknown interval '7x': use N followed by s, m, h or d "
        "(e.g. 5s, 1m, 30m, 1h, 1d)"
    ]


def test_cli_tap_names_the_configured_intervals_for_an_unconfigured_one(run_dir):
    result = _tap_cli(run_dir, "bars", "--interval", "1h")

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"hlstream tap: nothing can arrive for interval '1h': the instance running in {run_dir} "
        "has intervals 5s, 1m"
    ]


def test_cli_tap_checks_bar_coins_without_an_interval(run_dir):
    result = _tap_cli(run_dir, "bars", "ETH")

    assert result.returncode == 2, result.stderr
    assert "nothing can arrive for coin 'ETH'" in result.stderr


def test_cli_tap_falls_back_to_its_settings_without_a_writer_status(run_dir):
    (run_dir / "writer-status.json").unlink()

    result = _tap_cli(run_dir, "trades", "DOGE", HLSTREAM_COINS="BTC,ETH")

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "hlstream tap: nothing can arrive for coin 'DOGE': setting coins is BTC, ETH"
    ]


def test_cli_tap_on_a_streamed_coin_waits_for_messages(run_dir):
    result = _tap_cli(run_dir, "trades", "kPEPE", "--count", "1")

    assert result.returncode == 1  # --count not reached within --timeout: nothing published
    assert "nothing can arrive" not in result.stderr


def test_cli_tap_says_at_once_that_the_run_dir_does_not_exist(tmp_path):
    code = (
        "import sys, time\n"
        "from hlstream.cli import main\n"
        "started = time.monotonic()\n"
        "code = main(['tap', 'trades'])\n"
        "print(code, time.monotonic() - started)\n"
    )
    env = dict(os.environ, HLSTREAM_RUN_DIR=str(tmp_path / "nowhere"))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )

    exit_code, took_s = result.stdout.split()
    assert exit_code == "1" and "does not exist" in result.stderr
    assert float(took_s) < FAIL_FAST_S


def test_cli_tap_gives_a_starting_stage_time_to_bind_while_supervisord_runs(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    supervisord = socket.socket(socket.AF_UNIX)  # answers like supervisord's control socket
    supervisord.bind(str(run_dir / "supervisor.sock"))
    supervisord.listen()
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    environ = dict(os.environ, HLSTREAM_RUN_DIR=str(run_dir), HLSTREAM_COINS="BTC")
    tap = subprocess.Popen(
        [sys.executable, "-m", "hlstream.cli", "tap", "trades", "--timeout", "4"],
        env=environ,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        supervisord.settimeout(30)
        supervisord.accept()[0].close()  # the tap found no socket and asked: now it waits
        publisher.bind(f"ipc://{run_dir / 'trades.sock'}")
        _, stderr = tap.communicate(timeout=60)
    finally:
        tap.kill()
        publisher.close(linger=0)
        context.term()
        supervisord.close()

    assert tap.returncode == 0, stderr
    assert "cannot tap" not in stderr
