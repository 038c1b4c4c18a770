"""Ingest settings and `coins = "all"`: config validation of the new fields, the pure
`common.universe` helpers and `common.universe_io.resolve_settings_coins` (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hlstream.common.config import load_settings
from hlstream.common.errors import ConfigError, ProtocolError, TransientError
from hlstream.common.log import EventLog
from hlstream.common.universe import resolve_coins, universe_names, wants_all
from hlstream.common.universe_io import resolve_settings_coins

ADDRESS = "0x" + "Ab" * 20
META = {
    "universe": [
        {"name": "BTC"},
        {"name": "ETH"},
        {"name": "LUNA", "isDelisted": True},
        {"name": "kPEPE"},
    ]
}


def settings_from(tmp_path: Path, **env: str) -> Any:
    base = {"HLSTREAM_RUN_DIR": str(tmp_path / "run"), "HLSTREAM_DATA_DIR": str(tmp_path / "d")}
    return load_settings(environ=base | {f"HLSTREAM_{k.upper()}": v for k, v in env.items()})


def test_optional_channels_are_off_by_default(tmp_path: Path) -> None:
    settings = settings_from(tmp_path)

    assert (settings.book_coins, settings.bbo_coins, settings.user_fills) == ((), (), ())
    assert settings.ws_subscriptions_per_connection == 200


def test_optional_channels_are_read_and_addresses_lowercased(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        book_coins="BTC,kPEPE",
        bbo_coins="ETH",
        user_fills=ADDRESS,
        ws_subscriptions_per_connection="2",
    )

    assert settings.book_coins == ("BTC", "kPEPE")
    assert settings.bbo_coins == ("ETH",)
    assert settings.user_fills == (ADDRESS.lower(),)
    assert settings.ws_subscriptions_per_connection == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"user_fills": "0x123"}, "setting user_fills: '0x123' is not an address"),
        ({"user_fills": "ab" * 21}, "is not an address"),
        ({"user_fills": f"{ADDRESS},{ADDRESS.lower()}"}, "an address is listed twice"),
        ({"book_coins": "BTC,BTC"}, "setting book_coins: a coin is listed twice"),
        ({"bbo_coins": "BTC ETH"}, "setting bbo_coins: 'BTC ETH' is not a valid coin name"),
        ({"coins": "all,BTC"}, "'all' cannot be combined with other coins"),
        ({"ws_subscriptions_per_connection": "0"}, "outside 1..1000"),
        ({"ws_subscriptions_per_connection": "x"}, "ws_subscriptions_per_connection"),
    ],
)
def test_bad_ingest_settings_are_config_errors(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("..", r"\.\.")):
        settings_from(tmp_path, **env)


def test_coins_all_is_accepted_as_a_literal(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, coins="all")

    assert settings.coins == ("all",)
    assert wants_all(settings.coins)
    assert not wants_all(("BTC",))


def test_universe_names_refuse_delisted_perps_too() -> None:
    names = universe_names(META, {"universe": [], "tokens": []})

    assert "LUNA" not in names and "kPEPE" in names


def test_resolve_coins_expands_all_in_meta_order_without_delisted(tmp_path: Path) -> None:
    assert resolve_coins(settings_from(tmp_path, coins="all"), META) == ("BTC", "ETH", "kPEPE")
    assert resolve_coins(settings_from(tmp_path, coins="SOL"), META) == ("SOL",)


def test_resolve_coins_rejects_bad_or_empty_meta(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, coins="all")

    with pytest.raises(ProtocolError):
        resolve_coins(settings, {"universe": "BTC"})
    with pytest.raises(ConfigError, match="lists no perps"):
        resolve_coins(settings, {"universe": [{"name": "X", "isDelisted": True}]})


class FakeInfo:
    """An InfoClient stand-in: fails `failures` times, then answers META."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []

    def post(self, body: dict[str, Any]) -> Any:
        self.calls.append(body)
        if len(self.calls) <= self.failures:
            raise TransientError("down")
        return META


def test_resolve_settings_coins_fetches_meta_once_and_revalidates(tmp_path: Path) -> None:
    info = FakeInfo()
    settings = settings_from(tmp_path, coins="all", backoff_base_seconds="0.01")

    resolved = resolve_settings_coins(settings, info, log=EventLog("test"))  # type: ignore[arg-type]

    assert resolved.coins == ("BTC", "ETH", "kPEPE")
    assert resolved.run_dir == settings.run_dir
    assert info.calls == [{"type": "meta"}]


def test_resolve_settings_coins_retries_while_meta_is_down(tmp_path: Path) -> None:
    info = FakeInfo(failures=2)
    settings = settings_from(tmp_path, coins="all", backoff_base_seconds="0.01")

    resolved = resolve_settings_coins(settings, info, log=EventLog("test"))  # type: ignore[arg-type]

    assert resolved.coins == ("BTC", "ETH", "kPEPE")
    assert len(info.calls) == 3


def test_resolve_settings_coins_makes_no_request_for_a_concrete_list(tmp_path: Path) -> None:
    info = FakeInfo()
    settings = settings_from(tmp_path, coins="BTC")

    assert resolve_settings_coins(settings, info, log=EventLog("test")) is settings  # type: ignore[arg-type]
    assert info.calls == []
