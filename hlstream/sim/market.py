"""Pure market model for the fake exchange: prices, trades, books, candles, reference bars.

No sockets, threads or clocks: callers pass the time (`ts_ms`) and a seeded `random.Random`.
Trades are venue-shaped dicts exactly like fixtures/hyperliquid/quantick/ws_trades.json:
`{"coin","side","px","sz","time","hash","tid","users"}` with decimal strings for px/sz.

`candles` answers `candleSnapshot` the way the exchange does (empty windows omitted, the
window containing startTime and the unfinished current window included, most recent
`limit` only). `truth_rows` is the independent reference the CSV output is compared with:
one row per window, empty windows carried forward at the previous close with volume 0.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hlstream.common.decimals import format_decimal

ZERO_HASH = "0x" + "0" * 64
TruthRow = tuple[int, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class CoinSpec:
    """Static description of a coin: start price, precision, typical size and leverage."""

    start_px: str
    px_decimals: int
    sz_decimals: int
    mean_sz_units: int
    max_leverage: int


COIN_SPECS: dict[str, CoinSpec] = {
    "BTC": CoinSpec("63471", 0, 5, 1500, 40),
    "ETH": CoinSpec("3012.5", 1, 4, 2000, 25),
    "SOL": CoinSpec("145.23", 2, 2, 300, 20),
    "XRP": CoinSpec("0.5234", 4, 0, 800, 20),
    "DOGE": CoinSpec("0.16123", 5, 0, 3000, 10),
    "LINK": CoinSpec("14.123", 3, 1, 300, 10),
    "HYPE": CoinSpec("25.123", 3, 2, 2000, 10),
    "PURR/USDC": CoinSpec("0.18123", 5, 0, 2000, 1),
    "@107": CoinSpec("25.125", 3, 2, 1000, 1),
}
DEFAULT_SPEC = CoinSpec("12.345", 3, 1, 200, 5)


@dataclass(slots=True)
class CoinState:
    """Mutable per-coin price state: the last price in integer ticks plus precision."""

    ticks: int
    px_decimals: int
    sz_decimals: int
    mean_sz_units: int
    step_ticks: int


def coin_spec(coin: str) -> CoinSpec:
    """The spec for `coin`; unknown coins get a plausible default."""
    return COIN_SPECS.get(coin, DEFAULT_SPEC)


def new_state(coin: str) -> CoinState:
    """Fresh price state for `coin` at its start price."""
    spec = coin_spec(coin)
    ticks = int(Decimal(spec.start_px).scaleb(spec.px_decimals))
    return CoinState(
        ticks=ticks,
        px_decimals=spec.px_decimals,
        sz_decimals=spec.sz_decimals,
        mean_sz_units=spec.mean_sz_units,
        step_ticks=max(1, ticks // 20_000),
    )


def format_units(units: int, decimals: int) -> str:
    """`units * 10**-decimals` as an exchange decimal string (`63471` ticks, 0 -> "63471.0")."""
    return format_decimal(Decimal(units).scaleb(-decimals))


def step_price(state: CoinState, rng: random.Random) -> int:
    """Random-walk the price by a few ticks (never below one tick); returns the new ticks."""
    state.ticks = max(1, state.ticks + rng.randint(-2, 2) * state.step_ticks)
    return state.ticks


def draw_size_units(state: CoinState, rng: random.Random) -> int:
    """A positive trade size in units of 10**-szDecimals, roughly exponential."""
    return max(1, int(rng.expovariate(1.0) * state.mean_sz_units))


def random_hash(rng: random.Random) -> str:
    """A 0x-prefixed 64-hex hash; about one in five is all zeros, as seen on mainnet."""
    if rng.random() < 0.2:
        return ZERO_HASH
    return f"0x{rng.getrandbits(256):064x}"


def random_address(rng: random.Random) -> str:
    """A 0x-prefixed 40-hex address."""
    return f"0x{rng.getrandbits(160):040x}"


def make_trade(coin: str, ts_ms: int, rng: random.Random, state: CoinState) -> dict[str, Any]:
    """One venue-shaped trade at `ts_ms`; advances `state` (the price random walk)."""
    ticks = step_price(state, rng)
    units = draw_size_units(state, rng)
    return {
        "coin": coin,
        "side": "B" if rng.random() < 0.5 else "A",
        "px": format_units(ticks, state.px_decimals),
        "sz": format_units(units, state.sz_decimals),
        "time": ts_ms,
        "hash": random_hash(rng),
        "tid": rng.getrandbits(50),
        "users": [random_address(rng), random_address(rng)],
    }


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson-distributed count with mean `lam` (normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def make_book(
    coin: str, ts_ms: int, rng: random.Random, state: CoinState, depth: int = 10
) -> dict[str, Any]:
    """An l2Book snapshot `{"coin","time","levels":[bids, asks]}` around the last price."""
    bids: list[dict[str, Any]] = []
    asks: list[dict[str, Any]] = []
    for level in range(depth):
        bid_ticks = max(1, state.ticks - (level + 1) * state.step_ticks)
        ask_ticks = state.ticks + (level + 1) * state.step_ticks
        for side, ticks in ((bids, bid_ticks), (asks, ask_ticks)):
            side.append(
                {
                    "px": format_units(ticks, state.px_decimals),
                    "sz": format_units(draw_size_units(state, rng) * 3, state.sz_decimals),
                    "n": rng.randint(1, 40),
                }
            )
    return {"coin": coin, "time": ts_ms, "levels": [bids, asks]}


def book_to_bbo(book: dict[str, Any]) -> dict[str, Any]:
    """The `bbo` channel payload `{"coin","time","bbo":[best bid, best ask]}` of a book."""
    bids, asks = book["levels"]
    return {"coin": book["coin"], "time": book["time"], "bbo": [bids[0], asks[0]]}


def _in_time_order(trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trades sorted by time; equal times keep their arrival (list) order."""
    return sorted(trades, key=lambda trade: int(trade["time"]))


def _group_by_window(
    trades: list[dict[str, Any]], interval_ms: int
) -> dict[int, list[dict[str, Any]]]:
    """Trades in time order, grouped by window start."""
    windows: dict[int, list[dict[str, Any]]] = {}
    for trade in _in_time_order(trades):
        ts_ms = int(trade["time"])
        windows.setdefault(ts_ms - ts_ms % interval_ms, []).append(trade)
    return windows


def _ohlcv(window_trades: list[dict[str, Any]]) -> tuple[str, str, str, str, str]:
    """(o, h, l, c, v) of trades already in time order; prices keep the venue's strings."""
    prices = [trade["px"] for trade in window_trades]
    high = max(prices, key=Decimal)
    low = min(prices, key=Decimal)
    volume = sum((Decimal(trade["sz"]) for trade in window_trades), Decimal(0))
    return prices[0], high, low, prices[-1], format_decimal(volume)


def candles(
    trades: list[dict[str, Any]],
    coin: str,
    interval: str,
    interval_ms: int,
    start_ms: int,
    end_ms: int,
    limit: int = 5000,
) -> list[dict[str, Any]]:
    """candleSnapshot answer: windows containing start_ms..end_ms, empty ones omitted."""
    if end_ms < start_ms:
        return []
    first = start_ms - start_ms % interval_ms
    last = end_ms - end_ms % interval_ms
    mine = [trade for trade in trades if trade["coin"] == coin]
    windows = _group_by_window(mine, interval_ms)
    out: list[dict[str, Any]] = []
    for start in sorted(w for w in windows if first <= w <= last):
        window_trades = windows[start]
        o, h, low, c, v = _ohlcv(window_trades)
        out.append(
            {
                "t": start,
                "T": start + interval_ms - 1,
                "s": coin,
                "i": interval,
                "o": o,
                "c": c,
                "h": h,
                "l": low,
                "v": v,
                "n": len(window_trades),
            }
        )
    return out[-limit:] if limit > 0 else []


def truth_rows(
    trades: list[dict[str, Any]], interval_ms: int, from_ms: int, to_ms: int
) -> list[TruthRow]:
    """Reference bars (start, o, h, l, c, v) for windows starting in [from_ms, to_ms).

    Empty windows repeat the previous close with volume "0.0"; windows before the
    first trade are omitted. `trades` must all be of one coin.
    """
    windows = _group_by_window(trades, interval_ms)
    if not windows:
        return []
    rows: list[TruthRow] = []
    close = ""
    start = min(windows)
    while start < to_ms:
        if start in windows:
            o, h, low, close, v = _ohlcv(windows[start])
            row: TruthRow = (start, o, h, low, close, v)
        else:
            row = (start, close, close, close, close, "0.0")
        if start >= from_ms:
            rows.append(row)
        start += interval_ms
    return rows
