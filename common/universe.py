"""Which coins `coins = "all"` means: every perp the exchange's `meta` lists, in meta order.

Pure: takes the decoded `meta` answer (POST /info `{"type":"meta"}`), does no IO. Every stage
expands "all" with the same function at startup (through `common.universe_io`), so ingest,
aggregator and writer agree on the concrete coin list. Entries flagged `isDelisted` are
skipped: the venue closes a websocket that subscribes to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.errors import ConfigError, ProtocolError


def wants_all(coins: Iterable[str]) -> bool:
    """True when the configured coin list is the literal `all`."""
    return tuple(coins) == (ALL_COINS,)


def listed_perps(meta: Any) -> list[str]:
    """Names of the perps `meta` lists and has not flagged as delisted, in meta order."""
    if not isinstance(meta, dict) or not isinstance(meta.get("universe"), list):
        raise ProtocolError("meta answer has no universe list")
    names: list[str] = []
    for entry in meta["universe"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProtocolError("meta universe entry has no name")
        if entry.get("isDelisted") is True:
            continue
        names.append(entry["name"])
    return list(dict.fromkeys(names))


def resolve_coins(settings: Settings, meta: Any) -> tuple[str, ...]:
    """The concrete coins of `settings`: unchanged, or every listed perp for `all`."""
    if not wants_all(settings.coins):
        return settings.coins
    names = listed_perps(meta)
    if not names:
        raise ConfigError("setting coins: 'all' but the exchange's meta lists no perps")
    return tuple(names)
