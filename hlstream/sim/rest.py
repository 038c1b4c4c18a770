"""The fake exchange's POST /info (meta, spotMeta, candleSnapshot): `answer` is pure, `listen`
binds the HTTP server that hands each request body to the exchange."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from msgspec import Struct

from hlstream.common.timebucket import REST_INTERVALS
from hlstream.sim import market
from hlstream.sim.faults import Faults
from hlstream.sim.market import Listing, VenueTrade, dumps

BAD_BODY = "Failed to deserialize the JSON body into the target type"
# Spot pairs the venue lists: name -> (token index, token name, szDecimals).
SPOT_TOKENS = {"PURR/USDC": (1, "PURR", 0), "@107": (150, "HYPE", 2)}


class PerpAsset(Struct, frozen=True, rename="camel"):
    name: str
    sz_decimals: int
    max_leverage: int


class Meta(Struct, frozen=True):
    universe: list[PerpAsset]


class SpotToken(Struct, frozen=True, rename="camel"):
    name: str
    sz_decimals: int
    wei_decimals: int
    index: int
    token_id: str
    is_canonical: bool


class SpotPair(Struct, frozen=True, rename="camel"):
    name: str
    tokens: list[int]
    index: int
    is_canonical: bool


class SpotMeta(Struct, frozen=True):
    universe: list[SpotPair]
    tokens: list[SpotToken]


class Reply(NamedTuple):
    """An HTTP answer: JSON text when the status is 200, else plain text."""

    status: int
    text: str
    retry_after_s: float | None = None


def answer(
    body: object,
    listing: Listing,
    logs: Mapping[str, list[VenueTrade]],
    now_ms: int,
    faults: Faults,
) -> Reply:
    """The answer to one /info body (decoded JSON), from the listing and the trade logs, with
    the candle faults applied."""
    if not isinstance(body, dict):
        return Reply(422, BAD_BODY)
    kind = body.get("type")
    if kind == "meta":
        return Reply(200, dumps(meta(listing)))
    if kind == "spotMeta":
        return Reply(200, dumps(spot_meta(listing)))
    if kind == "candleSnapshot":
        return _candle_snapshot(body.get("req"), logs, now_ms, faults)
    return Reply(422, f"{BAD_BODY}: type {kind!r}")


def _candle_snapshot(
    req: object, logs: Mapping[str, list[VenueTrade]], now_ms: int, faults: Faults
) -> Reply:
    bad = f"{BAD_BODY}: req"
    if not isinstance(req, dict) or not isinstance(req.get("coin"), str):
        return Reply(422, f"{bad}: missing field `coin`")
    coin, interval = req["coin"], req.get("interval")
    if interval not in REST_INTERVALS:
        expected = ", ".join(f"`{i}`" for i in sorted(REST_INTERVALS))
        return Reply(
            422, f"{bad}.interval: unknown variant `{interval}`, expected one of {expected}"
        )
    start_ms, end_ms = req.get("startTime"), req.get("endTime", now_ms)
    if not isinstance(start_ms, int) or not isinstance(end_ms, int):
        return Reply(422, f"{bad}.startTime: invalid type, expected u64")
    candles = market.candles(logs.get(coin, []), coin, interval, start_ms, end_ms)
    served = [faults.serve(candle, now_ms) for candle in candles]
    return Reply(200, dumps([candle for candle in served if candle is not None]))


def meta(listing: Listing) -> Meta:
    """The listed perps' universe."""
    listed = [coin for coin in listing.perps if coin not in listing.delisted]
    specs = {coin: market.COIN_SPECS.get(coin, market.DEFAULT_SPEC) for coin in listed}
    return Meta([PerpAsset(c, s.sz_decimals, s.max_leverage) for c, s in specs.items()])


def spot_meta(listing: Listing) -> SpotMeta:
    """The listed spot pairs' universe and their tokens, USDC first."""
    tokens = [_token("USDC", 0, 8)]
    universe: list[SpotPair] = []
    for position, name in enumerate(listing.spot):
        if name in listing.delisted:
            continue
        default = (1000 + position, name.split("/")[0].lstrip("@"), 2)
        token_index, token_name, sz_decimals = SPOT_TOKENS.get(name, default)
        tokens.append(_token(token_name, token_index, sz_decimals))
        index = int(name[1:]) if name[1:].isdigit() else position
        universe.append(SpotPair(name, [token_index, 0], index, not name.startswith("@")))
    return SpotMeta(universe, tokens)


def _token(name: str, index: int, sz_decimals: int) -> SpotToken:
    return SpotToken(name, sz_decimals, 8, index, f"0x{index:032x}", index < 1000)


def listen(port: int, handle: Callable[[bytes], Reply]) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 answering POST /info with `handle(body)`."""

    class InfoHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            is_info = self.path.split("?")[0] == "/info"
            self._reply(handle(raw) if is_info else Reply(404, "Not Found"))

        def do_GET(self) -> None:  # noqa: N802
            self._reply(Reply(405, "Method Not Allowed"))

        def _reply(self, reply: Reply) -> None:
            data = reply.text.encode()
            self.send_response(reply.status)
            self.send_header(
                "Content-Type", "application/json" if reply.status == 200 else "text/plain"
            )
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            if reply.retry_after_s is not None:
                self.send_header("Retry-After", f"{reply.retry_after_s:g}")
            # A client that timed out on a delayed answer has gone: nothing to tell it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), InfoHandler)
    server.daemon_threads = True
    return server
