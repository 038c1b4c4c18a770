"""Reading websocket frames (RFC 6455): a pure parser and its socket shell; websocket-client
does the handshake and every send. A server frame is unmasked (a masked one is tolerated); a
message is text or binary, maybe fragmented, with ping, pong and close frames (<= 125 bytes,
never fragmented) possibly between fragments. Anything else is a ProtocolError: the link
reconnects.
"""

from __future__ import annotations

import fcntl
import select
import termios
import time
from typing import Protocol

from hlstream.common.errors import ProtocolError

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
READ_CHUNK = 65536
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a bigger message is not one the venue sends


class FrameParser:
    """Splits a byte stream into (opcode, payload) messages, fragments joined."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_bytes = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a message."""
        return len(self._buf) - self._pos + self._fragment_bytes

    def next(self) -> tuple[int, bytes] | None:
        """The next complete message or control frame, or None until more bytes are fed."""
        while True:
            buf, pos = self._buf, self._pos
            if len(buf) - pos < 2:
                return None
            b0, b1 = buf[pos], buf[pos + 1]
            if b0 & 0x70:
                raise ProtocolError("websocket frame has reserved bits set")
            length = b1 & 0x7F
            start = pos + 2
            if length >= 126:  # the length follows in 2 bytes (126) or 8 (127)
                start = pos + (4 if length == 126 else 10)
                if len(buf) < start:
                    return None
                length = int.from_bytes(buf[pos + 2 : start], "big")
                if length > MAX_MESSAGE_BYTES:
                    raise ProtocolError(f"websocket frame of {length} bytes is too big")
            mask = b""
            if b1 & 0x80:  # servers must not mask; tolerate it rather than drop the feed
                mask = bytes(buf[start : start + 4])
                start += 4
            end = start + length
            if len(buf) < end:
                return None
            payload = bytes(buf[start:end])
            self._pos = end
            if mask:
                payload = _unmask(payload, mask)
            message = self._assemble(b0 & 0x0F, bool(b0 & 0x80), payload)
            if message is not None:
                return message

    def _assemble(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= OP_CLOSE:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise ProtocolError(f"websocket frame has unknown control opcode {opcode}")
            if not fin or len(payload) > 125:
                raise ProtocolError("websocket control frame is fragmented or too long")
            return opcode, payload
        if opcode == OP_CONT:
            if not self._fragment_opcode:
                raise ProtocolError("websocket continuation frame without a message")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._fragment_opcode:
                raise ProtocolError("websocket message starts inside another")
            if fin:
                return opcode, payload
            self._fragment_opcode = opcode
        else:
            raise ProtocolError(f"websocket frame has unknown opcode {opcode}")
        self._fragments.append(payload)
        self._fragment_bytes += len(payload)
        if self._fragment_bytes > MAX_MESSAGE_BYTES:
            raise ProtocolError("websocket message is too big")
        if not fin:
            return None
        message = (self._fragment_opcode, b"".join(self._fragments))
        self._fragments, self._fragment_opcode, self._fragment_bytes = [], 0, 0
        return message


def _unmask(payload: bytes, mask: bytes) -> bytes:
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


class RawSocket(Protocol):
    def recv(self, size: int, /) -> bytes: ...

    def fileno(self) -> int: ...


class SocketFrames:
    """Messages read from a connected socket (plain or TLS), 64 KiB per `recv`."""

    def __init__(self, sock: RawSocket) -> None:
        self.sock = sock
        self.parser = FrameParser()
        self._ready: tuple[int, bytes] | None = None
        self.read_us = 0  # when the bytes of the message last returned arrived, epoch us

    def read(self) -> tuple[int, bytes]:
        """The next message; blocks up to the socket's timeout (TimeoutError), raises
        ConnectionError when the peer closed the connection, ProtocolError on a bad frame."""
        message, self._ready = self._ready, None
        if message is not None:
            return message
        while True:
            message = self.parser.next()
            if message is not None:
                return message
            data = self.sock.recv(READ_CHUNK)
            if not data:
                raise ConnectionError("connection closed by the server")
            self.read_us = time.time_ns() // 1000
            self.parser.feed(data)

    def ready(self) -> bool:
        """A whole message can be read without blocking (already parsed, or its bytes wait in
        the TLS layer or the kernel and fill it; a partial one still counts as ready)."""
        if self._ready is not None:
            return True
        self._ready = self.parser.next()
        if self._ready is not None:
            return True
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            return True
        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):  # closed under us: let read() say so
            return True

    def backlog_bytes(self) -> int:
        """Bytes received but not yet handled: ours (a parsed message counts its payload) plus
        the kernel's queue for the socket."""
        ready = self._ready
        parsed = 0 if ready is None else len(ready[1])
        return parsed + self.parser.buffered() + _kernel_queue(self.sock)


def _kernel_queue(sock: RawSocket) -> int:
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int.from_bytes(raw, "little")
