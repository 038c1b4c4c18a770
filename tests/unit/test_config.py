"""Configuration: defaults, TOML < env < flags, and clear errors for bad input."""

from __future__ import annotations

import argparse

import pytest

from hlstream.common.config import DEFAULT_COINS, load_settings, prepare_dirs
from hlstream.common.errors import ConfigError
from hlstream.common.flags import add_config_flags


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return parser.parse_args(list(argv))


def test_defaults_work_with_no_file_and_no_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.coins == DEFAULT_COINS
    assert settings.intervals == ("30m",)
    assert settings.ws_url == "wss://api.hyperliquid.xyz/ws"
    assert settings.info_url == "https://api.hyperliquid.xyz/info"
    assert settings.data_dir == tmp_path / "data"
    assert settings.backfill_hours == 6 and settings.stale_seconds == 90
    assert settings.trades_endpoint == f"ipc://{tmp_path}/run/trades.sock"


def test_every_documented_env_var_is_read(tmp_path):
    env = {
        "HLSTREAM_WS_URL": "ws://127.0.0.1:9001/ws",
        "HLSTREAM_INFO_URL": "http://127.0.0.1:9002/info",
        "HLSTREAM_COINS": "BTC, kPEPE",
        "HLSTREAM_INTERVALS": "5s,1m",
        "HLSTREAM_DATA_DIR": str(tmp_path / "d"),
        "HLSTREAM_RUN_DIR": str(tmp_path / "r"),
        "HLSTREAM_BACKFILL_HOURS": "2",
        "HLSTREAM_STALE_SECONDS": "15",
    }
    settings = load_settings(environ=env)
    assert settings.ws_url == "ws://127.0.0.1:9001/ws"
    assert settings.info_url == "http://127.0.0.1:9002/info"
    assert settings.coins == ("BTC", "kPEPE")
    assert settings.intervals == ("5s", "1m")
    assert settings.data_dir == tmp_path / "d" and settings.run_dir == tmp_path / "r"
    assert settings.backfill_hours == 2 and settings.stale_seconds == 15


def test_precedence_is_toml_then_env_then_flags(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('coins = ["SOL"]\nintervals = "1h"\nstale_seconds = 30\n')
    env = {"HLSTREAM_CONFIG": str(config), "HLSTREAM_INTERVALS": "5m"}
    settings = load_settings(_flags("--stale-seconds", "40"), environ=env)
    assert settings.coins == ("SOL",)
    assert settings.intervals == ("5m",)
    assert settings.stale_seconds == 40


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"HLSTREAM_INTERVALS": "7x"}, "unknown interval '7x'"),
        ({"HLSTREAM_COINS": ""}, "coin list is empty"),
        ({"HLSTREAM_COINS": " , "}, "coin list is empty"),
        ({"HLSTREAM_COINS": "BTC,BTC"}, "listed twice"),
        ({"HLSTREAM_COINS": "BT C"}, "not a valid coin"),
        ({"HLSTREAM_WS_URL": "http://x"}, "ws_url"),
        ({"HLSTREAM_STALE_SECONDS": "abc"}, "stale_seconds"),
        ({"HLSTREAM_BACKFILL_HOURS": "-1"}, "backfill_hours"),
        ({"HLSTREAM_TRADES_ENDPOINT": "tcp://0.0.0.0:5555"}, "CURVE"),
    ],
)
def test_bad_settings_raise_one_line_config_error(env, needle):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_toml_is_a_config_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("coins = [BTC\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(environ={"HLSTREAM_CONFIG": str(config)})


def test_unknown_toml_key_is_a_config_error(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('coinz = "BTC"\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(environ={"HLSTREAM_CONFIG": str(config)})


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"HLSTREAM_CONFIG": str(tmp_path / "nope.toml")})


def test_unwritable_data_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = load_settings(
        environ={
            "HLSTREAM_DATA_DIR": str(blocker / "sub"),
            "HLSTREAM_RUN_DIR": str(tmp_path / "run"),
        }
    )
    with pytest.raises(ConfigError, match="data_dir"):
        prepare_dirs(settings)


@pytest.mark.parametrize("name", ["data_dir", "run_dir"])
def test_a_file_given_as_a_dir_is_named_as_not_a_directory(tmp_path, name):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\n")
    dirs = {"data_dir": str(tmp_path / "d"), "run_dir": str(tmp_path / "r"), name: str(passwd)}
    settings = load_settings(
        environ={f"HLSTREAM_{key.upper()}": value for key, value in dirs.items()}
    )
    with pytest.raises(ConfigError) as raised:
        prepare_dirs(settings)
    assert str(raised.value) == f"setting {name}: {passwd} is not a directory"


def test_run_dir_is_private(tmp_path):
    settings = load_settings(
        environ={"HLSTREAM_DATA_DIR": str(tmp_path / "d"), "HLSTREAM_RUN_DIR": str(tmp_path / "r")}
    )
    prepare_dirs(settings)
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o700
