"""Exact decimal strings for prices and sizes; money never passes through float."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

ZERO = Decimal(0)
# One rule, a positive plain decimal: digits, at most one point, not zero. `_ONE` checks a
# string; `_LINES` checks a column joined by newlines in one C call (the hot paths).
# tests/property/test_decimal_props.py holds the two equal.
_POSITIVE = r"(?=[0-9.]*[1-9])[0-9]{1,32}(?:\.[0-9]{1,32})?"
_ONE = re.compile(_POSITIVE)
_LINES = re.compile(rf"(?:{_POSITIVE}\n)*")


def is_positive_decimal(text: object) -> bool:
    """A plain positive decimal string as the exchange writes prices and sizes (`63471.0`,
    `0.00155`, `12`): digits, at most one point, no sign, no exponent, not zero."""
    return type(text) is str and _ONE.fullmatch(text) is not None


def all_positive_decimals(texts: list[str]) -> bool:
    """`is_positive_decimal` of every one of `texts`; a string holding the separator itself
    is caught by counting lines."""
    try:
        joined = "\n".join(texts) + "\n" if texts else ""
    except TypeError:  # not all strings
        return False
    return _LINES.fullmatch(joined) is not None and joined.count("\n") == len(texts)


def parse_decimal(text: object) -> Decimal | None:
    """Parse an exchange decimal string; None for anything that is not a finite number."""
    if not isinstance(text, str) or not text or len(text) > 64:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def format_decimal(value: Decimal) -> str:
    """Format a Decimal exactly, exchange style: `1.50` -> `1.5`, `3` -> `3.0`, `0` -> `0.0`."""
    if value == 0:
        return "0.0"
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"
