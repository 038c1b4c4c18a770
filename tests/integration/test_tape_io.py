"""The tape on real files: segment layout, crash repair, readers, tail scans and pruning."""

from __future__ import annotations

import csv
import errno
import os
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hlstream.common.errors import ConfigError, IntegrityError, ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape import readers_io, writer_io
from hlstream.common.tape.format import HEADER, TapePosition, format_record, segment_path
from hlstream.common.tape.readers_io import (
    coverage_start_ms,
    last_trade_before,
    newest_ts_ms,
    read_since,
    read_tape,
    tail_trades,
)
from hlstream.common.tape.writer_io import TapeWriter, prune

DAY_MS = 86_400_000
MIDNIGHT_MS = int(datetime(2024, 3, 2, tzinfo=UTC).timestamp()) * 1000  # 2024-03-02 00:00 UTC


class RecordingLog(EventLog):
    """An EventLog that keeps (event, fields) of every warning."""

    def __init__(self) -> None:
        super().__init__("test")
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


def trade(ts_ms: int, tid: int, coin: str = "BTC", price: str = "100.5") -> Trade:
    return Trade(
        coin, "buy" if tid % 2 == 0 else "sell", price, "0.25", ts_ms, tid, f"0x{tid:064x}"
    )


def write(data_dir: Path, records: list[Trade | Gap]) -> list[TapePosition]:
    with closing(TapeWriter(data_dir, RecordingLog(), fsync=False)) as writer:
        writer.append(records)
        return writer.commit()


def test_segment_is_csv_with_header_readable_by_csv_module(tmp_path):
    records: list[Trade | Gap] = [
        trade(MIDNIGHT_MS + 1, 1),
        Gap("BTC", MIDNIGHT_MS + 2, MIDNIGHT_MS + 9, "reconnect"),
        trade(MIDNIGHT_MS + 10, 2),
    ]
    write(tmp_path, records)

    with open(tmp_path / "tape" / "btc" / "2024-03-02.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))

    assert [row["kind"] for row in rows] == ["T", "G", "T"]
    assert rows[0]["price"] == "100.5" and rows[0]["side"] == "sell" and rows[0]["tid"] == "1"
    assert rows[1]["to_ms"] == str(MIDNIGHT_MS + 9) and rows[1]["price"] == ""


def test_fsync_on_commit_writes_the_header_once_and_reports_the_end(tmp_path):
    with closing(TapeWriter(tmp_path, RecordingLog())) as writer:
        writer.append([trade(MIDNIGHT_MS, 1)])
        first = writer.commit()
        writer.append([trade(MIDNIGHT_MS, 2)])
        second = writer.commit()

    data = segment_path(tmp_path, "BTC", "2024-03-02").read_bytes()
    assert data.count(HEADER.encode()) == 1
    assert second == [TapePosition("BTC", "2024-03-02", len(data))]
    assert first[0].offset < second[0].offset


def test_records_go_to_the_segment_of_their_own_day(tmp_path):
    write(tmp_path, [trade(MIDNIGHT_MS, 2), trade(MIDNIGHT_MS - 1, 1)])

    before = list(read_tape(tmp_path, "BTC", MIDNIGHT_MS - DAY_MS, MIDNIGHT_MS))
    after = list(read_tape(tmp_path, "BTC", MIDNIGHT_MS, MIDNIGHT_MS + DAY_MS))

    assert before == [trade(MIDNIGHT_MS - 1, 1)]
    assert after == [trade(MIDNIGHT_MS, 2)]
    assert sorted(os.listdir(tmp_path / "tape" / "btc")) == ["2024-03-01.csv", "2024-03-02.csv"]


def test_odd_coin_gets_its_own_encoded_folder(tmp_path):
    write(tmp_path, [trade(MIDNIGHT_MS, 1, coin="PURR/USDC"), trade(MIDNIGHT_MS, 2, coin="@107")])

    assert (tmp_path / "tape" / "purr%2fusdc" / "2024-03-02.csv").is_file()
    assert list(read_tape(tmp_path, "@107", 0)) == [trade(MIDNIGHT_MS, 2, coin="@107")]


def test_read_tape_returns_gaps_overlapping_the_range(tmp_path):
    gap = Gap("BTC", MIDNIGHT_MS + 100, MIDNIGHT_MS + 200, "reconnect")
    write(tmp_path, [trade(MIDNIGHT_MS + 50, 1), gap, trade(MIDNIGHT_MS + 250, 2)])

    got = list(read_tape(tmp_path, "BTC", MIDNIGHT_MS + 150, MIDNIGHT_MS + 250))

    assert got == [gap]


def test_torn_tail_is_cut_on_open_and_logged(tmp_path):
    write(tmp_path, [trade(MIDNIGHT_MS, 1)])
    path = segment_path(tmp_path, "BTC", "2024-03-02")
    whole = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(format_record(trade(MIDNIGHT_MS, 2)).encode()[:17])
    log = RecordingLog()

    with closing(TapeWriter(tmp_path, log, fsync=False)) as writer:
        positions = writer.recover(["BTC"])

    assert path.read_bytes() == whole
    assert positions == [TapePosition("BTC", "2024-03-02", len(whole))]
    assert log.warnings == [("tape_torn_tail_cut", {"path": str(path), "dropped_bytes": 17})]


def test_append_after_torn_tail_continues_on_a_whole_line(tmp_path):
    write(tmp_path, [trade(MIDNIGHT_MS, 1)])
    path = segment_path(tmp_path, "BTC", "2024-03-02")
    with open(path, "ab") as handle:
        handle.write(b"T,BTC,17000")

    write(tmp_path, [trade(MIDNIGHT_MS, 3)])

    assert list(read_tape(tmp_path, "BTC", 0)) == [trade(MIDNIGHT_MS, 1), trade(MIDNIGHT_MS, 3)]


def test_segment_cut_inside_its_header_is_rewritten(tmp_path):
    path = segment_path(tmp_path, "BTC", "2024-03-02")
    path.parent.mkdir(parents=True)
    path.write_bytes(HEADER.encode()[:5])

    write(tmp_path, [trade(MIDNIGHT_MS, 1)])

    assert path.read_bytes() == (HEADER + format_record(trade(MIDNIGHT_MS, 1))).encode()


def test_foreign_file_is_refused_not_appended_to(tmp_path):
    path = segment_path(tmp_path, "BTC", "2024-03-02")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"Datetime,Open\n")

    with pytest.raises(IntegrityError):
        write(tmp_path, [trade(MIDNIGHT_MS, 1)])
    assert path.read_bytes() == b"Datetime,Open\n"


def test_reader_ignores_and_reports_an_unfinished_last_line(tmp_path):
    write(tmp_path, [trade(MIDNIGHT_MS, 1)])
    with open(segment_path(tmp_path, "BTC", "2024-03-02"), "ab") as handle:
        handle.write(b"T,BTC,1709")
    log = RecordingLog()

    got = [record for record, _ in read_since(tmp_path, "BTC", [], log=log)]

    assert got == [trade(MIDNIGHT_MS, 1)]
    assert [event for event, _ in log.warnings] == ["tape_torn_line_ignored"]


def test_corrupt_whole_line_raises_integrity_error_with_its_offset(tmp_path):
    write(tmp_path, [trade(MIDNIGHT_MS, 1)])
    path = segment_path(tmp_path, "BTC", "2024-03-02")
    offset = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(b"\x00\x00garbage\n")

    with pytest.raises(IntegrityError, match=f"byte {offset}"):
        list(read_tape(tmp_path, "BTC", 0))


def test_read_since_resumes_after_a_position_across_midnight(tmp_path):
    positions = write(tmp_path, [trade(MIDNIGHT_MS - 5, 1)])
    write(tmp_path, [trade(MIDNIGHT_MS - 4, 2), trade(MIDNIGHT_MS + 1, 3)])

    got = list(read_since(tmp_path, "BTC", positions[:1]))

    assert [record for record, _ in got] == [trade(MIDNIGHT_MS - 4, 2), trade(MIDNIGHT_MS + 1, 3)]
    last = got[-1][1]
    assert last.day == "2024-03-02"
    assert last.offset == segment_path(tmp_path, "BTC", "2024-03-02").stat().st_size
    assert list(read_since(tmp_path, "BTC", [last])) == []


def test_read_since_finds_a_late_trade_for_yesterday(tmp_path):
    checkpoint = write(tmp_path, [trade(MIDNIGHT_MS - 9, 1), trade(MIDNIGHT_MS + 1, 2)])
    write(tmp_path, [trade(MIDNIGHT_MS - 2, 3), trade(MIDNIGHT_MS + 2, 4)])

    got = [record for record, _ in read_since(tmp_path, "BTC", checkpoint)]

    assert got == [trade(MIDNIGHT_MS - 2, 3), trade(MIDNIGHT_MS + 2, 4)]


def test_read_since_a_position_inside_a_line_is_refused(tmp_path):
    write(tmp_path, [trade(MIDNIGHT_MS, 1)])

    with pytest.raises(IntegrityError):
        list(read_since(tmp_path, "BTC", [TapePosition("BTC", "2024-03-02", len(HEADER) + 3)]))


def _tail_keys(data_dir: Path, n: int) -> set[tuple[str, int, int]]:
    return {(t.coin, t.ts_ms, t.tid) for t in tail_trades(data_dir, "BTC", n)}


def test_tail_trades_are_the_newest_across_segments(tmp_path):
    write(
        tmp_path,
        [
            trade(MIDNIGHT_MS - 3, 1),
            trade(MIDNIGHT_MS - 2, 2),
            Gap("BTC", MIDNIGHT_MS, MIDNIGHT_MS + 1, "r"),
            trade(MIDNIGHT_MS + 5, 3),
        ],
    )

    assert _tail_keys(tmp_path, 2) == {
        ("BTC", MIDNIGHT_MS + 5, 3),
        ("BTC", MIDNIGHT_MS - 2, 2),
    }
    assert len(_tail_keys(tmp_path, 10)) == 3
    assert newest_ts_ms(tmp_path, "BTC") == MIDNIGHT_MS + 5
    assert newest_ts_ms(tmp_path, "ETH") is None


def test_tail_trades_read_lines_longer_than_a_read_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(readers_io, "CHUNK_BYTES", 16)
    write(tmp_path, [trade(MIDNIGHT_MS + i, i) for i in range(50)])

    assert _tail_keys(tmp_path, 3) == {("BTC", MIDNIGHT_MS + i, i) for i in (47, 48, 49)}


def test_prune_keeps_today_and_recent_days(tmp_path):
    days = [MIDNIGHT_MS - 3 * DAY_MS, MIDNIGHT_MS - 2 * DAY_MS, MIDNIGHT_MS - DAY_MS, MIDNIGHT_MS]
    write(tmp_path, [trade(ts, i) for i, ts in enumerate(days)])

    removed = prune(tmp_path, 2, "2024-03-02")

    assert [p.name for p in removed] == ["2024-02-28.csv", "2024-02-29.csv"]
    assert sorted(os.listdir(tmp_path / "tape" / "btc")) == ["2024-03-01.csv", "2024-03-02.csv"]


def test_prune_refuses_to_keep_less_than_two_days(tmp_path):
    write(tmp_path, [trade(MIDNIGHT_MS, 1)])

    with pytest.raises(ConfigError):
        prune(tmp_path, 1, "2024-03-02")
    assert segment_path(tmp_path, "BTC", "2024-03-02").is_file()


def test_second_writer_on_the_same_tape_is_refused(tmp_path):
    first = TapeWriter(tmp_path, RecordingLog(), fsync=False)
    try:
        with pytest.raises(IntegrityError):
            TapeWriter(tmp_path, RecordingLog(), fsync=False)
    finally:
        first.close()
    TapeWriter(tmp_path, RecordingLog(), fsync=False).close()


def test_append_with_one_bad_record_buffers_none_of_the_batch(tmp_path):
    with closing(TapeWriter(tmp_path, RecordingLog(), fsync=False)) as writer:
        writer.append([trade(MIDNIGHT_MS, 1)])
        with pytest.raises(ProtocolError):
            writer.append([trade(MIDNIGHT_MS, 2), trade(MIDNIGHT_MS, 3, price="abc")])

    assert list(read_tape(tmp_path, "BTC", 0)) == [trade(MIDNIGHT_MS, 1)]


def test_failed_commit_rolls_back_and_a_retry_writes_once(tmp_path, monkeypatch):
    write(tmp_path, [trade(MIDNIGHT_MS, 1)])
    path = segment_path(tmp_path, "BTC", "2024-03-02")
    size = path.stat().st_size
    real_write_all = writer_io._write_all

    def half_then_enospc(fd: int, data: bytes) -> None:
        real_write_all(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with closing(TapeWriter(tmp_path, RecordingLog(), fsync=False)) as writer:
        writer.append([trade(MIDNIGHT_MS, 2), trade(MIDNIGHT_MS, 3)])
        monkeypatch.setattr(writer_io, "_write_all", half_then_enospc)
        with pytest.raises(OSError):
            writer.commit()
        assert path.stat().st_size == size
        monkeypatch.setattr(writer_io, "_write_all", real_write_all)
        writer.commit()

    assert [r.tid for r in read_tape(tmp_path, "BTC", 0) if isinstance(r, Trade)] == [1, 2, 3]


def test_append_spans_are_exactly_the_bytes_the_records_occupy(tmp_path):
    with closing(TapeWriter(tmp_path, RecordingLog(), fsync=False)) as writer:
        first = writer.append([trade(MIDNIGHT_MS + 1, 1), trade(MIDNIGHT_MS + 2, 2)])
        second = writer.append([trade(MIDNIGHT_MS + 3, 3), trade(MIDNIGHT_MS - 1, 4)])
        writer.commit()
        third = writer.append([trade(MIDNIGHT_MS + 5, 5)])
        writer.commit()
    today = segment_path(tmp_path, "BTC", "2024-03-02").read_bytes()
    yesterday = segment_path(tmp_path, "BTC", "2024-03-01").read_bytes()
    key, key_before = ("BTC", "2024-03-02"), ("BTC", "2024-03-01")

    assert first[key] == (len(HEADER), first[key][1])
    assert second[key][0] == first[key][1] and third[key][0] == second[key][1]
    assert third[key][1] == len(today)

    def lines(data: bytes, span: tuple[int, int]) -> str:
        return data[span[0] : span[1]].decode()

    assert lines(today, first[key]) == format_record(trade(MIDNIGHT_MS + 1, 1)) + format_record(
        trade(MIDNIGHT_MS + 2, 2)
    )
    assert lines(today, third[key]) == format_record(trade(MIDNIGHT_MS + 5, 5))
    assert lines(yesterday, second[key_before]) == format_record(trade(MIDNIGHT_MS - 1, 4))
    assert second[key_before][1] == len(yesterday)


def test_tail_scans_find_the_last_trades_and_the_close_before_a_time(tmp_path):
    write(
        tmp_path,
        [
            trade(MIDNIGHT_MS - 5_000, 1, price="1.0"),  # yesterday
            trade(MIDNIGHT_MS + 1_000, 2, price="2.0"),
            Gap("BTC", MIDNIGHT_MS + 1_500, MIDNIGHT_MS + 1_600, "reconnect"),
            trade(MIDNIGHT_MS + 3_000, 4, price="4.0"),
            trade(MIDNIGHT_MS + 2_000, 3, price="3.0"),  # a late trade, appended after
        ],
    )
    assert [t.tid for t in tail_trades(tmp_path, "BTC", 3)] == [3, 4, 2]
    assert [t.tid for t in tail_trades(tmp_path, "BTC", 10)] == [3, 4, 2, 1]
    assert tail_trades(tmp_path, "ETH", 5) == [] and tail_trades(tmp_path, "BTC", 0) == []

    def before(ms: int) -> str | None:
        found = last_trade_before(tmp_path, "BTC", ms)
        return None if found is None else found.price

    assert before(MIDNIGHT_MS + 10_000) == "4.0"
    assert before(MIDNIGHT_MS + 3_000) == "3.0"  # strictly before; the late trade counts
    assert before(MIDNIGHT_MS + 1_000) == "1.0"  # from yesterday's segment
    assert before(MIDNIGHT_MS - 5_000) is None


def test_an_illiquid_coins_shuffled_replay_gives_the_newest_trade_as_the_close(tmp_path):
    # The venue's replay of an illiquid coin spans minutes in any order; the newest trade
    # before the time asked for is neither the last line nor within a minute of it.
    minutes = [7, 1, 9, 3, 0, 5, 2, 8, 4, 6]
    replay = [trade(MIDNIGHT_MS + 60_000 * m, m, price=f"{m}.5") for m in minutes]
    write(tmp_path, [*replay, trade(MIDNIGHT_MS + 600_000, 99, price="10.5")])

    found = last_trade_before(tmp_path, "BTC", MIDNIGHT_MS + 600_000)

    assert found is not None and found.price == "9.5"


def test_of_trades_at_one_time_the_close_before_is_the_last_appended(tmp_path):
    block = [trade(MIDNIGHT_MS + 1_000, tid, price=f"{tid}.0") for tid in (5, 3, 4)]
    write(tmp_path, block)

    found = last_trade_before(tmp_path, "BTC", MIDNIGHT_MS + 1_001)

    assert found is not None and found.price == "4.0"


def test_coverage_starts_just_after_the_oldest_trade_of_the_first_batch(tmp_path):
    assert coverage_start_ms(tmp_path, "BTC") is None
    oldest = MIDNIGHT_MS + 5_000  # a window start: the replay may have cut its block
    write(tmp_path, [trade(oldest + 900, 3), trade(oldest, 1), trade(oldest, 2)])
    write(tmp_path, [trade(oldest + 2_000, 4)])

    assert coverage_start_ms(tmp_path, "BTC") == oldest + 1
