"""Trades for tests."""

from __future__ import annotations

import itertools

from hlstream.common.messages import Trade

_tids = itertools.count(1_000_000)


def make_trade(
    coin: str = "BTC",
    price: str = "100.0",
    size: str = "1.0",
    ts_ms: int = 1_700_000_000_000,
    tid: int | None = None,
    is_buy: bool = True,
) -> Trade:
    """A valid Trade with overridable fields."""
    return Trade(
        coin,
        "buy" if is_buy else "sell",
        price,
        size,
        ts_ms,
        next(_tids) if tid is None else tid,
        "0x0",
    )
