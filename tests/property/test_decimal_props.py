"""The column check (`all_positive_decimals`, one regex over joined strings) says exactly what
`is_positive_decimal` says of each string, for any strings, separators and unicode digits
included."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from hlstream.common.decimals import all_positive_decimals, is_positive_decimal

plain = st.from_regex(r"\A[0-9]{1,34}(\.[0-9]{0,34})?\Z")
tricky = st.sampled_from(
    ["0", "0.0", "00.000", "1.", ".5", "1\n2", "1\n", "\n", "", "1e5", "-1", "+1", "١", " 1"]
)
texts = st.lists(plain | tricky | st.text(max_size=8), max_size=12)


@given(texts)
@example(["1.5", "0.25"])
@example(["1.5", "1\n2"])
@example([])
def test_column_check_equals_the_check_of_each(values: list[str]) -> None:
    assert all_positive_decimals(values) == all(is_positive_decimal(v) for v in values)


def test_column_check_refuses_non_strings() -> None:
    assert not all_positive_decimals(["1.5", 2])  # type: ignore[list-item]
    assert all_positive_decimals(["63471.0", "0.00155", "12"])
