"""Any bus message, read the way a tool would: stages read each socket with a `Decoder` of
the types it carries; tests read whatever comes."""

from __future__ import annotations

from typing import get_args

from hlstream.common.messages import Decoder, Envelope, Message

MESSAGES: tuple[type[Message], ...] = get_args(Message)
_ANY: Decoder[Message] = Decoder(MESSAGES)


def decode_message(payload: bytes) -> tuple[Envelope, Message]:
    return _ANY.decode(payload)
