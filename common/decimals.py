"""Exact decimal handling for prices and sizes; money never passes through float.

`format_decimal` writes a number the way the exchange writes candle fields: plain digits,
no exponent, no trailing zeros, and at least one digit after the point (`63471.0`,
`0.00155`, `520665683.0`). See fixtures/hyperliquid/.../test_get_candles_snapshot.yaml.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

ZERO = Decimal(0)
_PLAIN = re.compile(r"[0-9]{1,32}(?:\.[0-9]{1,32})?\Z")
# Prices and sizes repeat: each string is checked once. Hot loops test `text in ACCEPTED`
# before calling is_positive_decimal (a set lookup, no call); only this module adds to it.
ACCEPTED: set[str] = set()
_ACCEPTED_MAX = 100_000


def is_positive_decimal(text: object) -> bool:
    """A plain positive decimal string as the exchange writes prices and sizes (`63471.0`,
    `0.00155`, `12`): digits, at most one point, no sign, no exponent, not zero. The hot
    path's check: a set lookup for a string seen before, else a regex (no Decimal built)."""
    if type(text) is not str:
        return False
    if text in ACCEPTED:
        return True
    if not (_PLAIN.match(text) and text.strip("0.")):
        return False
    if len(ACCEPTED) >= _ACCEPTED_MAX:
        ACCEPTED.clear()
    ACCEPTED.add(text)
    return True


def parse_decimal(text: object) -> Decimal | None:
    """Parse an exchange decimal string; None for anything that is not a finite number."""
    if not isinstance(text, str) or not text or len(text) > 64:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return value


def format_decimal(value: Decimal) -> str:
    """Format a Decimal exactly, exchange style: `1.50` -> `1.5`, `3` -> `3.0`, `0` -> `0.0`."""
    if value == 0:
        return "0.0"
    text = format(value.normalize(), "f")
    if "." not in text:
        return text + ".0"
    return text
