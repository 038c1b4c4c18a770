"""The lookups `hlstream rebuild` makes on a tape with compacted days (hlstream/
rebuild_frames_io.py) give the record readers' answers, reading the compacted days' columns
where the answer is plain from them, and leaving the rest to the readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlstream.common.messages import Gap, Trade
from hlstream.common.tape import readers_io
from hlstream.common.tape.compact_io import compact_day
from hlstream.common.tape.format import segment_day
from hlstream.rebuild_frames_io import coverage_start_ms, last_price_before, newest_ts_ms
from tests.integration.test_tape_io import MIDNIGHT_MS, write

DAY_MS = 86_400_000
DAYS = [segment_day(MIDNIGHT_MS + i * DAY_MS) for i in range(3)]


def trade(ts_ms: int, tid: int) -> Trade:
    return Trade("BTC", "buy", f"{100 + tid % 97}.{tid % 10}5", "0.5", ts_ms, tid, "0x0")


def three_days(data_dir: Path, replay: list[Trade]) -> None:
    """Three days of BTC (the last with more trades than `newest_ts_ms` reads back), a gap
    first, `replay` (out of order) early on the second day."""
    records: list[Trade | Gap] = [Gap("BTC", MIDNIGHT_MS + 500, MIDNIGHT_MS + 900, "reconnect")]
    records += [trade(MIDNIGHT_MS + 1_000 + i * 60_000, i) for i in range(1_000)]
    records += replay
    second = MIDNIGHT_MS + DAY_MS
    records += [trade(second + 10_000 + i * 7_000, 2_000 + i) for i in range(500)]
    third = second + DAY_MS
    records += [trade(third + 1 + i * 5_000, 3_000 + i) for i in range(12_000)]
    write(data_dir, records)


def answers(data_dir: Path, times: list[int]) -> tuple[object, ...]:
    return (
        coverage_start_ms(data_dir, "BTC"),
        newest_ts_ms(data_dir, "BTC"),
        [last_price_before(data_dir, "BTC", at) for at in times],
    )


def readers(data_dir: Path, times: list[int]) -> tuple[object, ...]:
    before = [readers_io.last_trade_before(data_dir, "BTC", at) for at in times]
    return (
        readers_io.coverage_start_ms(data_dir, "BTC"),
        readers_io.newest_ts_ms(data_dir, "BTC"),
        [None if trade is None else trade.price for trade in before],
    )


TIMES = [
    MIDNIGHT_MS,  # before every trade
    MIDNIGHT_MS + 1_000,  # equal to the first trade's time: strictly before it is nothing
    MIDNIGHT_MS + 30 * 60_000 + 7,
    MIDNIGHT_MS + DAY_MS + 5,  # the second day, before its first trade: the first day's last
    MIDNIGHT_MS + DAY_MS + 50_000,
    MIDNIGHT_MS + 2 * DAY_MS + 123_456,
    MIDNIGHT_MS + 5 * DAY_MS,  # after the tape
]


def test_lookups_on_compacted_days_in_time_order_read_only_the_columns(tmp_path, monkeypatch):
    three_days(tmp_path, [])
    for day in DAYS:
        compact_day(tmp_path, "BTC", day)
    expected = readers(tmp_path, TIMES)
    assert expected[2][0] is None and expected[2][2] is not None  # both kinds of answer

    def scan(*args: object) -> None:
        pytest.fail("the readers' scan was used")

    for name in ("coverage_start_ms", "newest_ts_ms", "last_trade_before"):
        monkeypatch.setattr(readers_io, name, scan)
    assert answers(tmp_path, TIMES) == expected


def test_lookups_leave_out_of_order_trades_and_csv_days_to_the_readers(tmp_path):
    second = MIDNIGHT_MS + DAY_MS
    replay = [trade(second + 3_000, 901), trade(second + 9_000, 902), trade(second + 1_000, 903)]
    three_days(tmp_path, replay)
    compact_day(tmp_path, "BTC", DAYS[1])  # the first and last days stay CSV
    times = [*TIMES, second + 2_000, second + 9_001]
    assert answers(tmp_path, times) == readers(tmp_path, times)
    for day in (DAYS[0], DAYS[2]):
        compact_day(tmp_path, "BTC", day)
    assert answers(tmp_path, times) == readers(tmp_path, times)
