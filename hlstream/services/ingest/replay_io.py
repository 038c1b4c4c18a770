"""Ingest's tape replay server for late-joining taps (protocol: replay.py).

A thread with its own ROUTER socket, so a long replay never delays live trades. It reads
each day of the coin's tape up to the committed end ingest last published (`ends()`), streams
the records in chunks, one request at a time, and refuses a request over `MAX_TRADES`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from hlstream.common.bus_io import CurveKeys, secure_server
from hlstream.common.clock import now_ms
from hlstream.common.errors import IntegrityError, ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.format import segment_day
from hlstream.common.tape.readers_io import read_span, segment_days
from hlstream.services.ingest.replay import (
    CHUNK_TRADES,
    ENCODER,
    Frame,
    ReplayEnd,
    ReplayError,
    ReplayGap,
    ReplayRequest,
    ReplayTrades,
    parse_request,
)

MAX_TRADES = 5_000_000
POLL_MS = 200
WHOLE_FILE = 1 << 62
SEND_TIMEOUT_MS = 10_000  # a tap that stops reading is dropped after this
SEND_HWM = 1_000
START_TIMEOUT_S = JOIN_S = 5.0


@dataclass
class ReplayServer:
    """Serves `replay` requests from `start()` until `close()`."""

    context: zmq.Context[Any]
    endpoint: str
    data_dir: Path
    coins: tuple[str, ...]
    ends: Callable[[], dict[tuple[str, str], int]]  # committed end of each (coin, day) segment
    log: EventLog
    curve: CurveKeys | None = None
    halt: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="replay-server", daemon=True)

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(START_TIMEOUT_S)

    def close(self) -> None:
        self.halt.set()
        self.thread.join(JOIN_S)

    def _run(self) -> None:
        socket = self.context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # block at the HWM instead of dropping
        socket.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        secure_server(socket, self.curve)
        try:
            socket.bind(self.endpoint)
        except zmq.ZMQError as exc:
            self.log.error("replay_bind_failed", endpoint=self.endpoint, error=str(exc))
            socket.close()
            return
        finally:
            self.ready.set()
        try:
            while not self.halt.is_set():
                if socket.poll(POLL_MS):
                    self._serve(socket, socket.recv_multipart())
        finally:
            socket.close()

    def _serve(self, socket: zmq.Socket[Any], frames: list[bytes]) -> None:
        identity = frames[0]

        def send(frame: Frame) -> None:
            socket.send_multipart([identity, ENCODER.encode(frame)])

        try:
            send(self._answer(frames, send))
        except zmq.ZMQError as exc:  # the tap went away or stopped reading
            self.log.warning("replay_abandoned", error=str(exc))

    def _answer(self, frames: list[bytes], send: Callable[[Frame], None]) -> Frame:
        """Stream the replay through `send`; return the closing frame (end or error)."""
        try:
            if len(frames) != 2:
                raise ProtocolError(f"expected one request frame, got {len(frames) - 1}")
            request = parse_request(frames[1], self.coins, now_ms())
        except ProtocolError as exc:
            return ReplayError(error=f"bad request: {exc}")
        try:
            total, tape = self._stream(request, send)
        except (IntegrityError, OSError, TooManyError) as exc:
            self.log.error("replay_failed", coin=request.coin, error=str(exc))
            return ReplayError(error=str(exc))
        self.log.info("replay_served", coin=request.coin, since_ms=request.since_ms, trades=total)
        return ReplayEnd(coin=request.coin, trades=total, tape=tape)

    def _stream(
        self, request: ReplayRequest, send: Callable[[Frame], None]
    ) -> tuple[int, dict[str, int]]:
        coin, since_ms = request.coin, request.since_ms
        ends = self.ends()
        tape: dict[str, int] = {}
        total = 0
        chunk: list[Trade] = []
        for day in segment_days(self.data_dir, coin):
            if day < segment_day(since_ms):
                continue
            limit = ends.get((coin, day), WHOLE_FILE)
            reached = 0
            for record, position in read_span(self.data_dir, coin, day, 0, limit):
                reached = position.offset
                if isinstance(record, Gap):
                    if record.to_ms >= since_ms:
                        if chunk:
                            send(ReplayTrades(coin=coin, trades=chunk))
                            chunk = []
                        from_ms, to_ms, reason = record.from_ms, record.to_ms, record.reason
                        send(ReplayGap(coin=coin, from_ms=from_ms, to_ms=to_ms, reason=reason))
                elif record.ts_ms >= since_ms:
                    chunk.append(record)
                    total += 1
                    if total > MAX_TRADES:
                        raise TooManyError(
                            f"more than {MAX_TRADES} trades since {since_ms}; ask for less"
                        )
                    if len(chunk) >= CHUNK_TRADES:
                        send(ReplayTrades(coin=coin, trades=chunk))
                        chunk = []
            tape[day] = reached if limit == WHOLE_FILE else limit
        if chunk:
            send(ReplayTrades(coin=coin, trades=chunk))
        return total, tape


class TooManyError(Exception):
    """The request would return more trades than one replay serves."""
