"""The venue's coin lists, read one way: `all`, subscribable names, and unknown-coin hints.

`coins = "all"` means every perp the exchange's `meta` lists, in meta order.

Pure: takes the decoded `meta` answer (POST /info `{"type":"meta"}`), does no IO. Every stage
expands "all" with the same function at startup (through `common.universe_io`), so ingest,
aggregator and writer agree on the concrete coin list. Entries flagged `isDelisted` are
skipped: the venue closes a websocket that subscribes to them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.errors import ConfigError, ProtocolError


def wants_all(coins: Iterable[str]) -> bool:
    """True when the configured coin list is the literal `all`."""
    return tuple(coins) == (ALL_COINS,)


def listed_perps(meta: Any) -> list[str]:
    """Names of the perps `meta` lists and has not flagged as delisted, in meta order."""
    names = [
        _name(entry, "meta")
        for entry in _universe(meta, "meta")
        if entry.get("isDelisted") is not True
    ]
    return list(dict.fromkeys(names))


def resolve_coins(settings: Settings, meta: Any) -> tuple[str, ...]:
    """The concrete coins of `settings`: unchanged, or every listed perp for `all`."""
    if not wants_all(settings.coins):
        return settings.coins
    names = listed_perps(meta)
    if not names:
        raise ConfigError("setting coins: 'all' but the exchange's meta lists no perps")
    return tuple(names)


def universe_names(
    meta: object, spot_meta: object, dex_metas: Mapping[str, object] | None = None
) -> set[str]:
    """Coin names the exchange accepts, from `meta`, `spotMeta` and per-dex `meta` answers.

    Spot pairs are accepted by name (`PURR/USDC`, `@107`) and as `@{index}`.
    Raise ProtocolError if an answer does not have the expected shape.
    """
    names: set[str] = set()
    for entry in _universe(meta, "meta"):
        if entry.get("isDelisted") is not True:  # listed for history, not subscribable
            names.add(_name(entry, "meta"))
    for entry in _universe(spot_meta, "spotMeta"):
        names.add(_name(entry, "spotMeta"))
        index = entry.get("index")
        if _is_int(index):
            names.add(f"@{index}")
    for dex, answer in (dex_metas or {}).items():
        for entry in _universe(answer, f"meta dex={dex}"):
            if entry.get("isDelisted") is True:
                continue
            name = _name(entry, "meta")
            names.add(name if ":" in name else f"{dex}:{name}")
    return names


def _universe(answer: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(answer, dict) or not isinstance(answer.get("universe"), list):
        raise ProtocolError(f"{what} answer has no universe list")
    entries: list[dict[str, Any]] = answer["universe"]
    if not all(isinstance(entry, dict) for entry in entries):
        raise ProtocolError(f"{what} universe entry is not an object")
    return entries


def _name(entry: dict[str, Any], what: str) -> str:
    name = entry.get("name")
    if not isinstance(name, str):
        raise ProtocolError(f"{what} universe entry has no name")
    return name


def dex_prefixes(coins: Iterable[str]) -> list[str]:
    """The builder-dex prefixes used by `coins` (`xyz` for `xyz:TSLA`), sorted."""
    return sorted({coin.split(":", 1)[0] for coin in coins if ":" in coin})


def check_coins(coins: Iterable[str], allowed: set[str]) -> None:
    """Raise ConfigError naming the first coin the exchange does not list, with a hint."""
    for coin in coins:
        if coin in allowed:
            continue
        same_case = sorted(name for name in allowed if name.lower() == coin.lower())
        close = same_case or difflib.get_close_matches(coin, sorted(allowed), n=1, cutoff=0.6)
        if close:
            raise ConfigError(f"unknown coin {coin!r}: did you mean {close[0]}?")
        raise ConfigError(f"unknown coin {coin!r}: the exchange lists no such perp or spot coin")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
