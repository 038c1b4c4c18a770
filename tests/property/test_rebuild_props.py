"""Property tests for `hlstream rebuild`'s comparison: whatever one corruption a file of the
tape's rows suffers (a row duplicated, deleted, two rows swapped, the last line cut short),
the check reports it and a rebuild gives back exactly the tape's rows, which then check clean.
Rows from before the tape's first window, which the tape cannot settle, are kept as they are.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hlstream.common.csvrow import HEADER_LINE, Row, format_row
from hlstream.rebuild import compare, parse_lines

T0 = 1_700_000_040_000
STEP = 15_000
HEADER = HEADER_LINE.encode()

decimals = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False).map(str)


@st.composite
def tape_rows(draw: st.DrawFn) -> tuple[list[Row], list[Row], set[int]]:
    """Rows from before the tape, then the tape's consecutive windows with any values, and
    which of those the tape cannot vouch for."""
    closes = draw(st.lists(decimals, min_size=1, max_size=12))
    first = T0 + draw(st.integers(0, 100)) * STEP
    rows = [Row(first + i * STEP, c, c, c, c, draw(decimals)) for i, c in enumerate(closes)]
    inexact = {row.start_ms for row in rows if draw(st.booleans())}
    count = draw(st.integers(0, 4))
    older = [Row(first - (count - i) * STEP, "1", "1", "1", "1", "0.5") for i in range(count)]
    return older, rows, inexact


def _lines(rows: list[Row]) -> list[bytes]:
    return [format_row(row).encode() for row in rows]


@st.composite
def corruptions(draw: st.DrawFn, lines: list[bytes], older: int) -> tuple[str, list[bytes]]:
    """One corruption; a deleted row is one the tape has (it cannot restore an older one)."""
    kinds = ["duplicate", "delete", "truncate"] + (["swap"] if len(lines) > 1 else [])
    kind = draw(st.sampled_from(kinds))
    out = list(lines)
    if kind == "duplicate":
        at = draw(st.integers(0, len(out) - 1))
        out.insert(draw(st.integers(at + 1, len(out))), out[at])
    elif kind == "delete":
        del out[draw(st.integers(older, len(out) - 1))]
    elif kind == "swap":
        i, j = sorted(
            draw(st.lists(st.integers(0, len(out) - 1), min_size=2, max_size=2, unique=True))
        )
        out[i], out[j] = out[j], out[i]
    else:
        last = out[-1]
        out[-1] = last[: draw(st.integers(1, len(last) - 1))]
    return kind, out


@given(tape_rows(), st.data())
def test_any_single_corruption_is_reported_and_rebuilt_to_the_tape_rows(tape, data):
    older, rows, inexact = tape
    kind, lines = data.draw(corruptions(_lines(older + rows), len(older)))
    result = compare(parse_lines([HEADER, *lines]), rows, inexact, STEP)
    expected = {
        "duplicate": {"duplicate"},
        "delete": {"hole", "missing"},
        "swap": {"order"},
        "truncate": {"torn"},
    }[kind]
    assert expected & {finding.kind for finding in result.findings}, result.findings
    assert result.unsettled == [] and result.unparsed == []
    assert result.rows == older + rows
    again = compare(parse_lines([HEADER, *_lines(result.rows)]), rows, inexact, STEP)
    assert again.findings == [] and again.rows == older + rows


@given(tape_rows())
def test_a_file_of_the_tape_rows_checks_clean(tape):
    older, rows, inexact = tape
    result = compare(parse_lines([HEADER, *_lines(older + rows)]), rows, inexact, STEP)
    assert result.findings == [] and result.unsettled == [] and result.rows == older + rows
