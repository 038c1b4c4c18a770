"""Integration tests for sim.exchange.FakeExchange over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket

from hlstream.sim import market
from hlstream.sim.exchange import FakeExchange
from tests.support.exchange import exchange_fixture
from tests.support.wait import wait_for

BTC_TRADES = {"type": "trades", "coin": "BTC"}


exchange = exchange_fixture(coins=["BTC", "ETH"], seed=42, rate_per_coin=20.0, history_hours=0.5)


@pytest.fixture
def ws(exchange: FakeExchange) -> Iterator[websocket.WebSocket]:
    conn = websocket.create_connection(exchange.ws_url, timeout=2)
    try:
        yield conn
    finally:
        conn.close()


def send(conn: websocket.WebSocket, body: dict[str, Any]) -> None:
    conn.send(json.dumps(body))


def recv_json(conn: websocket.WebSocket) -> Any:
    return json.loads(conn.recv())


def subscribe(conn: websocket.WebSocket, sub: dict[str, Any]) -> None:
    send(conn, {"method": "subscribe", "subscription": sub})


def post(exchange: FakeExchange, body: dict[str, Any]) -> requests.Response:
    return requests.post(exchange.info_url, json=body, timeout=2)


def test_subscribe_gets_ack_then_replay(exchange: FakeExchange, ws: websocket.WebSocket) -> None:
    subscribe(ws, BTC_TRADES)
    ack = recv_json(ws)
    assert ack == {
        "channel": "subscriptionResponse",
        "data": {"method": "subscribe", "subscription": BTC_TRADES},
    }
    replay = recv_json(ws)
    assert replay["channel"] == "trades"
    assert 0 < len(replay["data"]) <= 30
    tids = {trade["tid"] for trade in exchange.trades("BTC")}
    assert all(trade["tid"] in tids for trade in replay["data"])
    assert exchange.subscribe_count() == 1


def test_live_trades_arrive_and_are_logged(exchange: FakeExchange, ws: websocket.WebSocket) -> None:
    subscribe(ws, BTC_TRADES)
    recv_json(ws), recv_json(ws)
    frame = recv_json(ws)
    assert frame["channel"] == "trades"
    assert 1 <= len(frame["data"]) <= 5
    logged = {(t["tid"], t["time"]) for t in exchange.trades("BTC")}
    assert all((t["tid"], t["time"]) in logged for t in frame["data"])
    assert all(t["time"] <= time.time() * 1000 + 1 for t in frame["data"])


def test_ping_gets_pong(ws: websocket.WebSocket) -> None:
    send(ws, {"method": "ping"})
    assert recv_json(ws) == {"channel": "pong"}


def test_double_subscribe_is_an_error(ws: websocket.WebSocket) -> None:
    subscribe(ws, {"type": "l2Book", "coin": "ETH"})
    assert recv_json(ws)["channel"] == "subscriptionResponse"
    assert recv_json(ws)["channel"] == "l2Book"
    subscribe(ws, {"type": "l2Book", "coin": "ETH"})
    message = recv_json(ws)
    while message["channel"] == "l2Book":
        message = recv_json(ws)
    assert message["channel"] == "error"
    assert message["data"].startswith("Already subscribed: ")


def test_unsubscribe_is_acked_and_stops_trades(ws: websocket.WebSocket) -> None:
    subscribe(ws, BTC_TRADES)
    recv_json(ws), recv_json(ws)
    send(ws, {"method": "unsubscribe", "subscription": BTC_TRADES})
    message = recv_json(ws)
    while message["channel"] == "trades":
        message = recv_json(ws)
    assert message == {
        "channel": "subscriptionResponse",
        "data": {"method": "unsubscribe", "subscription": BTC_TRADES},
    }
    ws.settimeout(0.3)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()


def test_malformed_message_gets_error_frame(ws: websocket.WebSocket) -> None:
    ws.send("hello")
    assert recv_json(ws) == {
        "channel": "error",
        "data": "Error parsing JSON into valid websocket request: hello",
    }


def test_unknown_coin_closes_socket_without_frame(
    exchange: FakeExchange, ws: websocket.WebSocket
) -> None:
    subscribe(ws, {"type": "trades", "coin": "NOPE"})
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()


def test_delist_closes_subscribed_connection(
    exchange: FakeExchange, ws: websocket.WebSocket
) -> None:
    subscribe(ws, {"type": "trades", "coin": "ETH"})
    recv_json(ws), recv_json(ws)
    exchange.delist("ETH")
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while True:
            ws.recv()
    names = [coin["name"] for coin in post(exchange, {"type": "meta"}).json()["universe"]]
    assert names == ["BTC"]


def test_inject_raw_delivers_garbage(exchange: FakeExchange, ws: websocket.WebSocket) -> None:
    send(ws, {"method": "ping"})
    assert recv_json(ws) == {"channel": "pong"}
    exchange.inject_raw("not json {")
    assert ws.recv() == "not json {"


def test_zombie_sends_nothing(exchange: FakeExchange, ws: websocket.WebSocket) -> None:
    exchange.set_zombie(True)
    send(ws, {"method": "ping"})
    ws.settimeout(0.5)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    assert exchange.connection_count() == 1


def test_zombie_loses_what_it_withheld_and_resumes_on_the_same_socket(
    exchange: FakeExchange, ws: websocket.WebSocket
) -> None:
    exchange.set_zombie(True)
    send(ws, {"method": "ping"})  # lost: no pong, ever
    exchange.inject_raw("lost in the silence")
    wait_for(  # the sender thread drops what is queued while zombie
        lambda: all(c.outbox.empty() for c in exchange._ws.clients), 5, "the frame dropped"
    )
    exchange.set_zombie(False)
    send(ws, {"method": "ping"})
    ws.settimeout(2.0)
    assert recv_json(ws) == {"channel": "pong"}, "one pong: the first ping and the frame are lost"
    assert exchange.connection_count() == 1


def test_drop_connections_closes_everything(
    exchange: FakeExchange, ws: websocket.WebSocket
) -> None:
    exchange.drop_connections()
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()


def test_idle_connection_is_closed() -> None:
    with FakeExchange(coins=["BTC"], spot=[], idle_close_s=0.3, history_hours=0.01) as fake:
        conn = websocket.create_connection(fake.ws_url, timeout=2)
        time.sleep(0.6)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:
                conn.recv()


def test_candle_snapshot_matches_market_candles(exchange: FakeExchange) -> None:
    exchange.pause_trades(True)
    now_ms = int(time.time() * 1000)
    req = {"coin": "BTC", "interval": "1m", "startTime": now_ms - 3_600_000, "endTime": now_ms}
    answer = post(exchange, {"type": "candleSnapshot", "req": req})
    assert answer.status_code == 200
    rows = answer.json()
    expected = market.candles(exchange.trades("BTC"), "BTC", "1m", req["startTime"], now_ms)
    assert rows == expected
    assert len(rows) >= 10
    starts = [row["t"] for row in rows]
    assert starts == sorted(set(starts))


def test_candle_snapshot_bad_interval_and_unknown_coin(exchange: FakeExchange) -> None:
    req = {"coin": "BTC", "interval": "7m", "startTime": 0, "endTime": 1}
    answer = post(exchange, {"type": "candleSnapshot", "req": req})
    assert answer.status_code == 422 and "unknown variant" in answer.text
    req = {"coin": "NOPE", "interval": "1m", "startTime": 0, "endTime": 2**40}
    assert post(exchange, {"type": "candleSnapshot", "req": req}).json() == []


def test_fail_rest_429_has_retry_after(exchange: FakeExchange) -> None:
    exchange.fail_rest(429, 1, retry_after=1.5)
    first = post(exchange, {"type": "meta"})
    assert first.status_code == 429 and first.headers["Retry-After"] == "1.5"
    assert post(exchange, {"type": "meta"}).status_code == 200
    assert exchange.rest_requests() == [{"type": "meta"}, {"type": "meta"}]


def test_meta_and_spot_meta_list_coins(exchange: FakeExchange) -> None:
    meta = post(exchange, {"type": "meta"}).json()
    assert [coin["name"] for coin in meta["universe"]] == ["BTC", "ETH"]
    assert meta["universe"][0]["szDecimals"] == 5
    spot = post(exchange, {"type": "spotMeta"}).json()
    assert [pair["name"] for pair in spot["universe"]] == ["PURR/USDC", "@107"]


def test_unknown_request_type_is_422(exchange: FakeExchange) -> None:
    assert post(exchange, {"type": "whatever"}).status_code == 422
    bad = requests.post(exchange.info_url, data=b"{", timeout=2)
    assert bad.status_code == 422


def test_stop_is_quick_with_open_connection() -> None:
    fake = FakeExchange(coins=["BTC"], spot=[], history_hours=0.01)
    fake.start()
    conn = websocket.create_connection(fake.ws_url, timeout=2)
    subscribe(conn, BTC_TRADES)
    began = time.monotonic()
    fake.stop()
    assert time.monotonic() - began < 2.0
    conn.close()
