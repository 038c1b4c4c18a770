"""The venue's coin lists from the decoded `meta` answers (pure). `coins = "all"` is every perp
`meta` lists, in its order; `isDelisted` entries are skipped (subscribing closes the socket).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.errors import ConfigError, ProtocolError


def wants_all(coins: Iterable[str]) -> bool:
    return tuple(coins) == (ALL_COINS,)


def resolve_coins(settings: Settings, meta: object) -> tuple[str, ...]:
    """The concrete coins of `settings`: unchanged, or every listed perp for `all`."""
    if not wants_all(settings.coins):
        return settings.coins
    names = tuple(dict.fromkeys(_listed(meta, "meta")))
    if not names:
        raise ConfigError("setting coins: 'all' but the exchange's meta lists no perps")
    return names


def universe_names(
    meta: object, spot_meta: object, dex_metas: Mapping[str, object] | None = None
) -> set[str]:
    """Coin names the exchange accepts, from `meta`, `spotMeta` and per-dex `meta` answers
    (spot pairs by name, `PURR/USDC`, and as `@{index}`); ProtocolError on a wrong shape."""
    names = set(_listed(meta, "meta"))
    for entry in _universe(spot_meta, "spotMeta"):
        names.add(_name(entry, "spotMeta"))
        index = entry.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            names.add(f"@{index}")
    for dex, answer in (dex_metas or {}).items():
        names.update(n if ":" in n else f"{dex}:{n}" for n in _listed(answer, f"meta dex={dex}"))
    return names


def _listed(answer: object, what: str) -> list[str]:
    """The names of the universe entries not flagged `isDelisted`, in order."""
    entries = _universe(answer, what)
    return [_name(entry, what) for entry in entries if entry.get("isDelisted") is not True]


def _universe(answer: object, what: str) -> list[Mapping[str, object]]:
    if not isinstance(answer, dict) or not isinstance(answer.get("universe"), list):
        raise ProtocolError(f"{what} answer has no universe list")
    entries: list[Mapping[str, object]] = answer["universe"]
    if not all(isinstance(entry, dict) for entry in entries):
        raise ProtocolError(f"{what} universe entry is not an object")
    return entries


def _name(entry: Mapping[str, object], what: str) -> str:
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
