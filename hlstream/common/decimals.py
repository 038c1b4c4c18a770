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
# The same shape, not zero, once per line: a whole column of prices or sizes in one C call.
_PLAIN_LINES = re.compile(r"(?:(?=[0-9.]*[1-9])[0-9]{1,32}(?:\.[0-9]{1,32})?\n)*")


def is_positive_decimal(text: object) -> bool:
    """A plain positive decimal string as the exchange writes prices and sizes (`63471.0`,
    `0.00155`, `12`): digits, at most one point, no sign, no exponent, not zero."""
    return type(text) is str and bool(_PLAIN.match(text) and text.strip("0."))


def all_positive_decimals(texts: list[str]) -> bool:
    """`is_positive_decimal` of every one of `texts`, in one regex over them joined (the hot
    paths check a frame's or a message's prices and sizes at once: half the cost of a call
    per string). A string holding the separator itself is caught by counting lines."""
    if not texts:
        return True
    try:
        joined = "\n".join(texts) + "\n"
    except TypeError:  # not all strings
        return False
    return _PLAIN_LINES.fullmatch(joined) is not None and joined.count("\n") == len(texts)


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
