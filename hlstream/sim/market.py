"""Pure market model of the fake exchange: prices, trades, books, candles, reference bars.
No sockets, threads or clocks: callers pass the time and a seeded `random.Random`. Payloads have
the venue's JSON shapes (tests/fixtures/hyperliquid), prices and sizes as decimal strings."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, TypedDict

import msgspec

from hlstream.common.decimals import format_decimal
from hlstream.common.timebucket import parse_interval

TruthRow = tuple[int, str, str, str, str, str]
ZERO_HASH = "0x" + "0" * 64
ZERO_HASH_SHARE = 0.2  # of trades whose hash is all zeros, as seen on mainnet
STEPS_PER_PRICE = 20_000  # one random-walk step is this fraction of the start price
BOOK_DEPTH = 10  # levels per side
POISSON_NORMAL_ABOVE = 30  # mean above which `poisson` draws from the normal approximation


class TradePrint(TypedDict):  # what a bar needs of a trade
    coin: str
    px: str
    sz: str
    time: int


class VenueTrade(TradePrint):  # as the `trades` channel sends it
    side: str  # "B" or "A"
    hash: str
    tid: int
    users: list[str]


class Candle(TypedDict):  # a candleSnapshot row, keys in the venue's order
    t: int
    T: int
    s: str
    i: str
    o: str
    c: str
    h: str
    l: str  # noqa: E741 - the venue's key
    v: str
    n: int


class Level(TypedDict):  # a book level: price, size, number of orders
    px: str
    sz: str
    n: int


class Book(TypedDict):  # an l2Book snapshot; levels are [bids, asks], best first
    coin: str
    time: int
    levels: list[list[Level]]


class Bbo(TypedDict):  # the bbo channel: [best bid, best ask]
    coin: str
    time: int
    bbo: list[Level]


class Listing(NamedTuple):
    """The coins an exchange was created with, and those delisted since."""

    perps: list[str]
    spot: list[str]
    delisted: set[str]

    def coins(self) -> list[str]:
        """The coins listed now, perps then spot."""
        return [coin for coin in self.perps + self.spot if coin not in self.delisted]


@dataclass(frozen=True, slots=True)
class CoinSpec:
    """Start price, precision, typical size (in units of 10**-sz_decimals) and leverage."""

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
DEFAULT_SPEC = CoinSpec("12.345", 3, 1, 200, 5)  # any other coin


@dataclass(slots=True)
class CoinState:
    """A coin's price random walk, in integer ticks of 10**-px_decimals."""

    spec: CoinSpec
    ticks: int
    step_ticks: int


def dumps(payload: object) -> str:
    """Compact JSON with raw UTF-8, as the venue writes it."""
    return msgspec.json.encode(payload).decode()


def new_state(coin: str) -> CoinState:
    """Fresh price state for `coin` at its start price."""
    spec = COIN_SPECS.get(coin, DEFAULT_SPEC)
    ticks = int(Decimal(spec.start_px).scaleb(spec.px_decimals))
    return CoinState(spec, ticks, max(1, ticks // STEPS_PER_PRICE))


def format_units(units: int, decimals: int) -> str:
    """`units * 10**-decimals` as an exchange decimal string (63471 ticks, 0 -> "63471.0")."""
    return format_decimal(Decimal(units).scaleb(-decimals))


def _size_units(state: CoinState, rng: random.Random) -> int:
    return max(1, int(rng.expovariate(1.0) * state.spec.mean_sz_units))


def _address(rng: random.Random) -> str:
    return f"0x{rng.getrandbits(160):040x}"


def make_trade(coin: str, ts_ms: int, rng: random.Random, state: CoinState) -> VenueTrade:
    """A random trade at `ts_ms`; advances the price walk in `state`."""
    state.ticks = max(1, state.ticks + rng.randint(-2, 2) * state.step_ticks)
    px = format_units(state.ticks, state.spec.px_decimals)
    sz = format_units(_size_units(state, rng), state.spec.sz_decimals)
    return venue_trade(coin, ts_ms, px, sz, rng)


def venue_trade(coin: str, ts_ms: int, px: str, sz: str, rng: random.Random) -> VenueTrade:
    """A trade of `sz` at `px`; side, hash, tid and users are drawn from `rng`."""
    return {
        "coin": coin,
        "side": "B" if rng.random() < 0.5 else "A",
        "px": px,
        "sz": sz,
        "time": ts_ms,
        "hash": ZERO_HASH if rng.random() < ZERO_HASH_SHARE else f"0x{rng.getrandbits(256):064x}",
        "tid": rng.getrandbits(50),
        "users": [_address(rng), _address(rng)],
    }


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson-distributed count with mean `lam`."""
    if lam <= 0:
        return 0
    if lam > POISSON_NORMAL_ABOVE:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def make_book(coin: str, ts_ms: int, rng: random.Random, state: CoinState) -> Book:
    """An l2Book snapshot of BOOK_DEPTH levels a side around the last price."""

    def level(ticks: int) -> Level:
        px = format_units(ticks, state.spec.px_decimals)
        sz = format_units(_size_units(state, rng) * 3, state.spec.sz_decimals)
        return {"px": px, "sz": sz, "n": rng.randint(1, 40)}

    offsets = [(depth + 1) * state.step_ticks for depth in range(BOOK_DEPTH)]
    bids = [level(max(1, state.ticks - offset)) for offset in offsets]
    asks = [level(state.ticks + offset) for offset in offsets]
    return {"coin": coin, "time": ts_ms, "levels": [bids, asks]}


def book_to_bbo(book: Book) -> Bbo:
    """The `bbo` channel payload of a book."""
    bids, asks = book["levels"]
    return {"coin": book["coin"], "time": book["time"], "bbo": [bids[0], asks[0]]}


def _windows(trades: Sequence[TradePrint], interval_ms: int) -> dict[int, list[TradePrint]]:
    """Trades by window start, each window in time order (equal times keep list order)."""
    windows: dict[int, list[TradePrint]] = {}
    for trade in sorted(trades, key=lambda trade: trade["time"]):
        windows.setdefault(trade["time"] - trade["time"] % interval_ms, []).append(trade)
    return windows


def _ohlcv(trades: list[TradePrint]) -> tuple[str, str, str, str, str]:
    """(o, h, l, c, v) of trades in time order; prices keep the venue's strings."""
    prices = [trade["px"] for trade in trades]
    high, low = max(prices, key=Decimal), min(prices, key=Decimal)
    volume = format_decimal(sum((Decimal(trade["sz"]) for trade in trades), Decimal(0)))
    return prices[0], high, low, prices[-1], volume


def candles(
    trades: Sequence[TradePrint],
    coin: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    limit: int = 5000,
) -> list[Candle]:
    """candleSnapshot's answer: the windows of `coin` from the one holding start_ms to the one
    holding end_ms (unfinished included), empty ones omitted, the newest `limit` only."""
    if end_ms < start_ms or limit <= 0:
        return []
    interval_ms = parse_interval(interval)
    first, last = start_ms - start_ms % interval_ms, end_ms - end_ms % interval_ms
    windows = _windows([trade for trade in trades if trade["coin"] == coin], interval_ms)
    out: list[Candle] = []
    for t in sorted(w for w in windows if first <= w <= last)[-limit:]:
        o, h, low, c, v = _ohlcv(windows[t])
        end, n = t + interval_ms - 1, len(windows[t])
        out.append(Candle(t=t, T=end, s=coin, i=interval, o=o, c=c, h=h, l=low, v=v, n=n))
    return out


def truth_rows(
    trades: Sequence[TradePrint], interval_ms: int, from_ms: int, to_ms: int
) -> list[TruthRow]:
    """Reference bars (start, o, h, l, c, v) of one coin's trades for windows starting in
    [from_ms, to_ms): an empty window repeats the previous close with volume "0.0"; windows
    before the first trade are omitted."""
    windows = _windows(trades, interval_ms)
    rows: list[TruthRow] = []
    close = ""
    start = min(windows, default=to_ms)
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
