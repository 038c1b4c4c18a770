"""`hlstream run` refuses bad configuration with one clear line and exit 78, before any stage."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hlstream.sim.exchange import FakeExchange


def _run(tmp_path, **env_overrides):
    env = dict(
        os.environ, HLSTREAM_DATA_DIR=str(tmp_path / "data"), HLSTREAM_RUN_DIR=str(tmp_path / "run")
    )
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"HLSTREAM_INTERVALS": "7x"}, "unknown interval"),
        ({"HLSTREAM_COINS": ""}, "coin list is empty"),
        ({"HLSTREAM_BACKFILL_HOURS": "lots"}, "backfill_hours"),
    ],
)
def test_bad_setting_exits_78_with_one_line(tmp_path, env, needle):
    result = _run(tmp_path, **env)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("hlstream: error:")
    assert not (tmp_path / "run" / "supervisor.sock").exists()


def test_malformed_toml_exits_78(tmp_path):
    config = tmp_path / "hl.toml"
    config.write_text("intervals = [\n")
    result = _run(tmp_path, HLSTREAM_CONFIG=str(config))
    assert result.returncode == 78
    assert "not valid TOML" in result.stderr


def test_unwritable_data_dir_exits_78(tmp_path):
    (tmp_path / "blocker").write_text("")
    result = _run(tmp_path, HLSTREAM_DATA_DIR=str(tmp_path / "blocker" / "data"))
    assert result.returncode == 78
    assert "data_dir" in result.stderr and "not writable" in result.stderr


def test_unknown_coin_stops_run_before_any_stage_or_file(tmp_path):
    exchange = FakeExchange(coins=["BTC", "ETH"], rate_per_coin=1.0, seed=3, history_hours=0.1)
    exchange.start()
    try:
        result = _run(
            tmp_path,
            HLSTREAM_WS_URL=exchange.ws_url,
            HLSTREAM_INFO_URL=exchange.info_url,
            HLSTREAM_COINS="BTCC",
            HLSTREAM_INTERVALS="5s",
        )
    finally:
        exchange.stop()
    assert result.returncode == 78, result.stdout + result.stderr
    last = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert last == "hlstream: error: unknown coin 'BTCC': did you mean BTC?"
    assert not list(tmp_path.rglob("*.csv")), "a refused coin left a file"
    assert not (tmp_path / "run" / "logs").exists(), "supervisord was started"
