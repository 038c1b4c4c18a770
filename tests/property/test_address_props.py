"""The column check of addresses agrees with the one-string check on every column."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.addresses import all_addresses, is_address, users_or_none

HEX = "0123456789abcdefABCDEF"
addresses = st.text(HEX, min_size=40, max_size=40).map(lambda h: "0x" + h)
near_misses = st.one_of(
    st.text(HEX + "xX,g\n\u0661", max_size=44),
    st.text(HEX, min_size=38, max_size=42).map(lambda h: "0x" + h),
    addresses.map(lambda a: a[:-1] + ","),
    addresses.map(lambda a: "0" + a[:-1]),
    addresses.map(lambda a: a + "0"),
    addresses.map(lambda a: a.replace("x", "X")),
)
texts = st.one_of(addresses, addresses, near_misses)


@settings(max_examples=500)
@given(st.lists(texts, max_size=8))
def test_all_addresses_is_is_address_of_each(column: list[str]) -> None:
    assert all_addresses(column) == all(map(is_address, column))


def test_is_address_is_0x_and_40_hex_digits() -> None:
    assert is_address("0x" + "aB3" * 13 + "f")
    assert not is_address("0x" + "a" * 39)
    assert not is_address("0x" + "a" * 41)
    assert not is_address("0X" + "a" * 40)
    assert not is_address("0x" + "a" * 39 + "g")
    assert not is_address(None)


def test_users_are_a_list_of_exactly_two_addresses() -> None:
    a, b = "0x" + "a" * 40, "0x" + "b" * 40

    assert users_or_none([a, b]) == (a, b)
    assert users_or_none([a]) is None
    assert users_or_none([a, b, a]) is None
    assert users_or_none([a, "x"]) is None
    assert users_or_none(a + b) is None
    assert users_or_none(None) is None
