"""Ingest's frame reader over TLS, as on mainnet (wss): a websockets server with a test
certificate sends messages from a few bytes to several TLS records long, with pings between
them; every message comes out whole, once and in order, and pings are answered."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from pathlib import Path

import websocket
import websockets

from hlstream.services.ingest.wsframes import OP_PING, OP_TEXT, SocketFrames

FIXTURES = Path(__file__).parent.parent / "fixtures"
SIZES = [0, 10, 125, 126, 500, 16_000, 16_385, 65_535, 65_536, 70_000, 200_000]


def messages() -> list[str]:
    return [
        json.dumps({"channel": "trades", "i": i, "pad": "x" * SIZES[i % len(SIZES)]})
        for i in range(120)
    ]


def serve(ready: threading.Event, port: list[int], pongs: list[bytes]) -> None:
    async def handler(connection: websockets.ServerConnection) -> None:
        for i, text in enumerate(messages()):
            await connection.send(text)
            if i % 10 == 0:
                waiter = await connection.ping(str(i).encode())
                pongs.append(str(i).encode())
                await asyncio.wait_for(waiter, 5)  # answered by the client's reader
        await asyncio.sleep(0.5)

    async def main() -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(FIXTURES / "tls-test-cert.pem", FIXTURES / "tls-test-key.pem")
        async with websockets.serve(handler, "127.0.0.1", 0, ssl=context, max_size=None) as srv:
            port.append(srv.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.sleep(20)

    asyncio.run(main())


def test_every_message_arrives_whole_over_tls_and_pings_are_answered():
    ready, port, pongs = threading.Event(), [], []
    threading.Thread(target=serve, args=(ready, port, pongs), daemon=True).start()
    assert ready.wait(10)
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{port[0]}", sslopt={"cert_reqs": ssl.CERT_NONE}, timeout=5
    )
    try:
        assert isinstance(ws.sock, ssl.SSLSocket)
        frames = SocketFrames(ws.sock)
        got: list[str] = []
        pinged: list[bytes] = []
        while len(got) < len(messages()):
            opcode, payload = frames.read()
            if opcode == OP_PING:
                pinged.append(payload)
                ws.pong(payload)  # what the link does
            elif opcode == OP_TEXT:
                got.append(payload.decode())
        assert got == messages()
        assert pinged == pongs == [str(i).encode() for i in range(0, 120, 10)]
    finally:
        ws.close()
