"""Wallet addresses as the venue writes them in a trade's `users`: `0x` and 40 hex digits.

`is_address` checks one string; `all_addresses` checks a column of them in a few C calls
(the hot paths: ingest's parse and the tape's format). tests/property/test_address_props.py
holds the two equal.
"""

from __future__ import annotations

import re
from typing import Annotated

from msgspec import Meta

ADDRESS_LENGTH = 42
# The Struct rule: the length; the hex digits are checked a column at a time (`all_addresses`).
Address = Annotated[str, Meta(min_length=ADDRESS_LENGTH, max_length=ADDRESS_LENGTH)]
Users = tuple[Address, Address]  # [buyer, seller]

_ONE = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX = b"0123456789abcdefABCDEF"
_STEP = ADDRESS_LENGTH + 1  # an address and its separator


def is_address(text: object) -> bool:
    """`0x` then 40 hex digits (either case), nothing else."""
    return type(text) is str and _ONE.fullmatch(text) is not None


def all_addresses(texts: list[str]) -> bool:
    """`is_address` of every one of `texts`. Joined with `,` after each, the text must be
    blocks of `0x`, 40 hex digits and `,`: the `0`, `x` and `,` of each block are checked in
    place, and the only non-hex bytes must be those `x` and `,`, so no address can be
    shorter or longer than its block."""
    count = len(texts)
    try:
        joined = ",".join(texts) + "," if texts else ""
    except TypeError:  # not all strings
        return False
    if len(joined) != _STEP * count or not joined.isascii():
        return False
    data = joined.encode("ascii")
    return (
        data[0::_STEP] == b"0" * count
        and data[1::_STEP] == b"x" * count
        and data[ADDRESS_LENGTH::_STEP] == b"," * count
        and data.translate(None, _HEX) == b"x," * count
    )


def users_or_none(value: object) -> Users | None:
    """A venue `users` value as (buyer, seller) if it is a list of two addresses, else None."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(map(is_address, value)):
        return (value[0], value[1])
    return None
