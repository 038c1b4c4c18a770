"""The docs as a user follows them: the README's quick start says how to run what `make`
installed, and the pandas and polars tape snippets of docs/data.md run verbatim on a tape
written by TapeWriter.

The snippets are taken from docs/data.md itself, so the documentation cannot drift from what
is tested. The tape holds more trades than polars' 100-row schema inference sees before its
first gap marker: inferred types would read `to_ms` as text there, and pandas would read
`tid` and `to_ms` as float64 (the empty cells of the other kind of row).
"""

from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.format import HEADER_V1_BYTES, day_start_ms, segment_path
from hlstream.common.tape.writer_io import TapeWriter

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-11-30"
TRADES_BEFORE_GAP = 150
BIG_TID = 2**50 - 1  # the venue's tids are 50-bit hashes: above 2**53 float64 loses digits
PRICE = "91234.00000001"  # more digits than float64 keeps next to a 5-digit integer part


def test_quick_start_says_how_to_run_hlstream_and_the_offline_demo():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    makefile = (ROOT / "Makefile").read_text()

    assert "make demo" in quick_start and "\ndemo: " in makefile
    assert ".venv/bin/hlstream" in quick_start
    assert "source .venv/bin/activate" in quick_start


def _snippet(library: str) -> str:
    readme = (ROOT / "docs" / "data.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    found = [
        block
        for block in blocks
        if f"import {library} as " in block and f"data/tape/btc/{DAY}.csv" in block
    ]
    assert len(found) == 1, f"docs/data.md should hold exactly one {library} tape snippet"
    return found[0]


USERS = ("0x818b120e0b475dc79d62092a3ae0d0e31cbf2c99", "0x6e8bc7cd0978397b06a14af2a8c31f5daeffea79")


def _write_tape(data_dir: Path, *, old_header: bool = False) -> tuple[list[Trade], Gap]:
    """A day of BTC with a gap marker; every other trade has users. `old_header`: the day's
    segment was created before the tape had users columns (so its trades are without)."""
    start = day_start_ms(DAY)
    trades = [
        Trade(
            "BTC",
            "buy" if i % 2 else "sell",
            PRICE,
            "0.00155",
            start + i,
            BIG_TID - i,
            "0xab",
            USERS if i % 2 and not old_header else None,
        )
        for i in range(TRADES_BEFORE_GAP)
    ]
    if old_header:
        path = segment_path(data_dir, "BTC", DAY)
        path.parent.mkdir(parents=True)
        path.write_bytes(HEADER_V1_BYTES)
    gap = Gap("BTC", start + 10_000, start + 19_000, "replay_short")
    after = Trade("BTC", "sell", "91235.5", "0.10", start + 20_000, 42, "0xcd")
    with closing(TapeWriter(data_dir, EventLog("test"), fsync=False)) as writer:
        writer.append([*trades, gap, after])
        writer.commit()
    return [*trades, after], gap


def _run(snippet: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(cwd)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/data.md", "exec"), namespace)
    return namespace["tape"]


@pytest.mark.parametrize("old_header", [False, True], ids=["users", "old-header"])
def test_pandas_snippet_reads_exact_types_on_a_day_with_a_gap(tmp_path, monkeypatch, old_header):
    trades, gap = _write_tape(tmp_path / "data", old_header=old_header)

    tape = _run(_snippet("pandas"), tmp_path, monkeypatch)

    string = pd.StringDtype()
    users = {} if old_header else {"buyer": string, "seller": string}
    assert dict(tape.dtypes) == {
        "kind": string,
        "coin": string,
        "ts_ms": "int64",
        "tid": pd.Int64Dtype(),
        "side": string,
        "price": string,
        "size": string,
        "hash": string,
        "to_ms": pd.Int64Dtype(),
        "reason": string,
        **users,
    }
    rows = tape[tape["kind"] == "T"]
    if not old_header:
        assert list(rows["buyer"].fillna("")) == [(t.users or ("",))[0] for t in trades]
        assert list(rows["seller"].fillna("")) == [(t.users or ("", ""))[1] for t in trades]
    assert list(rows["tid"]) == [t.tid for t in trades]
    assert list(rows["price"]) == [t.price for t in trades]
    assert list(rows["size"]) == [t.size for t in trades]
    assert rows["to_ms"].isna().all()
    marker = tape[tape["kind"] == "G"].iloc[0]
    assert (marker["ts_ms"], marker["to_ms"], marker["reason"]) == (
        gap.from_ms,
        gap.to_ms,
        gap.reason,
    )
    assert marker["tid"] is pd.NA and marker["price"] is pd.NA


@pytest.mark.parametrize("old_header", [False, True], ids=["users", "old-header"])
def test_polars_snippet_reads_exact_types_on_a_day_with_a_gap(tmp_path, monkeypatch, old_header):
    trades, gap = _write_tape(tmp_path / "data", old_header=old_header)

    tape = _run(_snippet("polars"), tmp_path, monkeypatch)

    users = {} if old_header else {"buyer": pl.String, "seller": pl.String}
    assert dict(tape.schema) == {
        "kind": pl.String,
        "coin": pl.String,
        "ts_ms": pl.Int64,
        "tid": pl.Int64,
        "side": pl.String,
        "price": pl.String,
        "size": pl.String,
        "hash": pl.String,
        "to_ms": pl.Int64,
        "reason": pl.String,
        **users,
    }
    rows = tape.filter(pl.col("kind") == "T")
    if not old_header:
        assert rows["buyer"].to_list() == [(t.users or (None,))[0] for t in trades]
    assert rows["tid"].to_list() == [t.tid for t in trades]
    assert rows["price"].to_list() == [t.price for t in trades]
    assert rows["size"].to_list() == [t.size for t in trades]
    assert rows["to_ms"].null_count() == len(trades)
    marker = tape.filter(pl.col("kind") == "G").row(0, named=True)
    assert (marker["ts_ms"], marker["to_ms"], marker["reason"]) == (
        gap.from_ms,
        gap.to_ms,
        gap.reason,
    )
    assert marker["tid"] is None and marker["price"] is None


def _to_polars(tape: Any) -> pl.DataFrame:
    """What a one-liner returned, as a polars frame (pandas with pyarrow, DuckDB relation)."""
    if isinstance(tape, pl.DataFrame):
        return tape
    if isinstance(tape, pd.DataFrame):
        return pl.from_pandas(tape)
    return tape.pl()


def _parquet_line(doc: str, library: str) -> str:
    """docs/data.md's block that imports `library` and reads a Parquet day, or the README's
    one line `tape = {library}.read...` (with its import)."""
    text = (ROOT / doc).read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if ".parquet" in b]
    if doc == "README.md":
        (line,) = [li for b in blocks for li in b.splitlines() if f"= {library}." in li]
        return f"import {library}\n{line}\n"
    (snippet,) = [b for b in blocks if f"import {library}" in b]
    return snippet


@pytest.mark.parametrize("doc", ["docs/data.md", "README.md"])
@pytest.mark.parametrize("library", ["polars", "pandas", "duckdb"])
def test_each_line_reads_a_compacted_day_with_exact_text(tmp_path, monkeypatch, library, doc):
    from hlstream.common.tape.compact_io import compact_day

    trades, gap = _write_tape(tmp_path / "data")
    compact_day(tmp_path / "data", "BTC", DAY)
    snippet = _parquet_line(doc, library).replace("2026-11-28", DAY)

    tape = _to_polars(_run(snippet, tmp_path, monkeypatch))

    rows = tape.filter(pl.col("kind") == "T")
    assert rows["price"].dtype == pl.String and rows["tid"].dtype == pl.Int64
    assert rows["price"].to_list() == [t.price for t in trades]
    assert rows["tid"].to_list() == [t.tid for t in trades]
    assert rows["buyer"].to_list() == [(t.users or (None,))[0] for t in trades]
    marker = tape.filter(pl.col("kind") == "G").row(0, named=True)
    assert (marker["ts_ms"], marker["to_ms"], marker["tid"]) == (gap.from_ms, gap.to_ms, None)
