"""The trade count of a bar row, from the tape's trades in its window: exact when the tape
accounts for the row, None when it does not (never a guess)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hlstream.common.csvrow import Row
from hlstream.common.filenames import csv_filename
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.format import HEADER, format_record, segment_day, segment_path
from hlstream.services.relay import tradecount_io
from hlstream.services.relay.bars_io import new_bars
from hlstream.services.relay.core import FileProgress
from hlstream.services.relay.tradecount import TimeMarks, WindowTrades
from tests.support.trades import make_trade

T0 = 1_700_000_040_000  # a minute boundary


def row_trade_count(row: Row, trades: list[Trade]) -> int | None:
    found = WindowTrades()
    for trade in trades:
        found.add(trade)
    return found.count_for(row)


def _row(start_ms: int, o: str, h: str, low: str, c: str, v: str) -> Row:
    return Row(start_ms, o, h, low, c, v)


def test_trades_that_account_for_the_row_are_its_count():
    trades = [make_trade(price="10.5", size="0.25"), make_trade(price="9", size="1.750")]
    assert row_trade_count(_row(T0, "10.5", "10.50", "9.0", "9", "2"), trades) == 2
    assert row_trade_count(_row(T0, "5", "5", "5", "5", "0"), []) == 0


def test_trades_that_do_not_account_for_the_row_leave_the_count_unknown():
    trades = [make_trade(price="10.5", size="0.25"), make_trade(price="9", size="1.75")]
    assert row_trade_count(_row(T0, "10.5", "10.5", "9", "9", "2.5"), trades) is None  # lacks one
    assert row_trade_count(_row(T0, "10.5", "11", "9", "9", "2"), trades) is None  # other high
    assert row_trade_count(_row(T0, "10.5", "10.5", "8", "9", "2"), trades) is None  # other low
    assert row_trade_count(_row(T0, "5", "5", "5", "5", "1"), []) is None  # before the tape


@given(st.lists(st.integers(0, 1_000), min_size=1, max_size=200), st.integers(1, 7))
def test_no_trade_at_or_after_a_start_lies_before_its_mark(times, every):
    marks = TimeMarks()
    newest = -1
    for i, ts in enumerate(times, 1):  # i = the offset just after record i - 1
        newest = max(newest, ts)
        if i % every == 0:
            marks.add(i, newest)
    for start in range(-1, 1_002, 37):
        first = marks.start_for(start)
        assert all(ts < start for ts in times[:first])


def _write_tape(data: Path, records: list[Trade | Gap], mode: str = "w") -> None:
    path = segment_path(data, "BTC", segment_day(T0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as handle:
        if mode == "w":
            handle.write(HEADER)
        handle.write("".join(format_record(r) for r in records))


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _write_rows(path: Path, rows: list[tuple[int, str]], mode: str = "w") -> None:
    with open(path, mode) as handle:
        if mode == "w":
            handle.write("Datetime,Open,High,Low,Close,Volume\n")
        for start, ohlcv in rows:
            handle.write(f"{_stamp(start)},{ohlcv}\n")


def test_bars_read_from_a_csv_file_carry_the_tape_trade_count(tmp_path, monkeypatch):
    monkeypatch.setattr(tradecount_io, "MARK_EVERY", 2)  # marks inside every window
    data = tmp_path / "data"
    minute = 60_000
    # The tape starts at T0 + 1 min; the row of T0 came from the venue (unknown count).
    tape = [make_trade(price=p, size="1", ts_ms=T0 + minute + i * 10_000)
            for i, p in enumerate(["10", "12", "11", "9", "10", "10"])]  # fmt: skip
    tape.insert(3, make_trade(price="12", size="0.5", ts_ms=T0 + minute + 5_000))  # late
    _write_tape(data, tape)
    csv = data / csv_filename("BTC", "1m")
    rows = [(T0, "9,9,9,9,4"), (T0 + minute, "10,12,9,10,6.5"), (T0 + 2 * minute, "10,10,10,10,0")]
    _write_rows(csv, rows)
    tradecount_io.tape_counts.cache_clear()

    found = new_bars(csv, "BTC", "1m", FileProgress(), tmp_path / "pins")
    assert found is not None
    bars, state = found
    assert [(b.start_ms - T0, b.trades) for b in bars] == [(0, None), (minute, 7), (2 * minute, 0)]

    # The tape and the file grow: the next window is counted from the segment's index.
    _write_tape(data, [make_trade(price="8", size="2", ts_ms=T0 + 3 * minute + 5)], mode="a")
    _write_rows(csv, [(T0 + 3 * minute, "8,8,8,8,2")], mode="a")
    found = new_bars(csv, "BTC", "1m", state, tmp_path / "pins")
    assert found is not None
    assert [(b.start_ms - T0, b.trades) for b in found[0]] == [(3 * minute, 1)]
