"""Compaction of closed tape days to Parquet on real files: readers, crashes, retention."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec
import polars as pl
import pytest

from hlstream.common.errors import IntegrityError
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape import compact_io
from hlstream.common.tape.compact_io import compact_closed, compact_day, has_work
from hlstream.common.tape.format import (
    HEADER_V1,
    TapePosition,
    archive_path,
    coin_dir,
    segment_path,
)
from hlstream.common.tape.readers_io import (
    last_trade_before,
    read_since,
    read_tape,
    tail_trades,
    tape_coins,
)
from hlstream.common.tape.writer_io import prune
from tests.integration.test_tape_io import MIDNIGHT_MS, RecordingLog, trade, write

DAY_MS = 86_400_000
TODAY = "2024-03-02"
CLOSED = "2024-02-29"  # older than yesterday
USERS = ("0x818b120e0b475dc79d62092a3ae0d0e31cbf2c99", "0x6e8bc7cd0978397b06a14af2a8c31f5daeffea79")


class CrashError(Exception):
    pass


def three_days(data_dir: Path) -> list[Trade | Gap]:
    """Trades on 2024-02-29 (closed), 03-01 (yesterday) and 03-02 (today), and a gap."""
    records: list[Trade | Gap] = [trade(MIDNIGHT_MS - 2 * DAY_MS + i, i) for i in range(5)]
    records.append(Gap("BTC", MIDNIGHT_MS - 2 * DAY_MS + 9, MIDNIGHT_MS - 2 * DAY_MS + 99, 'x,"y'))
    records += [trade(MIDNIGHT_MS - DAY_MS + 5, 10), trade(MIDNIGHT_MS + 5, 11)]
    write(data_dir, records)
    return records


def age(data_dir: Path) -> None:
    """Make every CSV segment look last written two days ago (compaction waits for quiet)."""
    old = time.time() - 2 * 86_400
    for path in (data_dir / "tape").rglob("*.csv"):
        os.utime(path, (old, old))


def files(data_dir: Path) -> list[str]:
    return sorted(os.listdir(coin_dir(data_dir, "BTC")))


def test_closed_days_only_are_compacted_and_read_as_before(tmp_path):
    records = three_days(tmp_path)
    csv_text = segment_path(tmp_path, "BTC", CLOSED).read_bytes()
    log = RecordingLog()
    age(tmp_path)

    done = compact_closed(tmp_path, TODAY, log).done

    assert [(c.coin, c.day, c.records, c.csv_bytes) for c in done] == [
        ("BTC", CLOSED, 6, len(csv_text))
    ]
    assert files(tmp_path) == ["2024-02-29.parquet", "2024-03-01.csv", "2024-03-02.csv"]
    assert list(read_tape(tmp_path, "BTC", 0)) == records
    assert tape_coins(tmp_path) == ["BTC"]
    assert tail_trades(tmp_path, "BTC", 10)[-1] == records[0]
    assert last_trade_before(tmp_path, "BTC", MIDNIGHT_MS - DAY_MS) == records[4]
    assert compact_closed(tmp_path, TODAY, log).done == [] and log.warnings == []


def test_one_line_reads_a_compacted_day_with_exact_decimal_text(tmp_path):
    with_users = msgspec.structs.replace(trade(MIDNIGHT_MS - 2 * DAY_MS + 1, 2), users=USERS)
    write(tmp_path, [trade(MIDNIGHT_MS - 2 * DAY_MS, 1, price="63471.10"), with_users])
    age(tmp_path)
    compact_closed(tmp_path, TODAY, RecordingLog())

    frame = pl.read_parquet(archive_path(tmp_path, "BTC", CLOSED))

    assert frame["buyer"].to_list() == [None, USERS[0]]
    assert frame["seller"].to_list() == [None, USERS[1]]
    assert list(read_tape(tmp_path, "BTC", 0))[1] == with_users
    assert frame.drop("buyer", "seller").row(0, named=True) == {
        "kind": "T",
        "coin": "BTC",
        "ts_ms": MIDNIGHT_MS - 2 * DAY_MS,
        "tid": 1,
        "side": "sell",
        "price": "63471.10",
        "size": "0.25",
        "hash": f"0x{1:064x}",
        "to_ms": None,
        "reason": None,
    }


def test_a_day_of_the_older_header_is_compacted_and_read_without_users_columns(tmp_path):
    path = segment_path(tmp_path, "BTC", CLOSED)
    path.parent.mkdir(parents=True)
    ts_ms = MIDNIGHT_MS - 2 * DAY_MS
    lines = [f"T,BTC,{ts_ms},1,buy,1.5,2,0xab,,\n", f"G,BTC,{ts_ms},,,,,,{ts_ms + 9},x\n"]
    path.write_text(HEADER_V1 + "".join(lines))
    before = list(read_since(tmp_path, "BTC", []))
    write(tmp_path, [msgspec.structs.replace(trade(ts_ms + 5, 2), users=USERS)])  # appended
    age(tmp_path)

    assert compact_closed(tmp_path, TODAY, RecordingLog()).failed == []

    frame = pl.read_parquet(archive_path(tmp_path, "BTC", CLOSED))
    assert frame.columns == HEADER_V1.strip().split(",")
    read = list(read_since(tmp_path, "BTC", []))
    assert read[:2] == before
    assert before[0][0] == Trade("BTC", "buy", "1.5", "2", ts_ms, 1, "0xab")
    assert read[2][0] == trade(ts_ms + 5, 2)  # without its users, as the CSV held it


def test_a_position_taken_on_the_csv_resumes_on_the_parquet_day(tmp_path):
    three_days(tmp_path)
    read = list(read_since(tmp_path, "BTC", [TapePosition("BTC", CLOSED, 0)]))
    age(tmp_path)
    compact_closed(tmp_path, TODAY, RecordingLog())

    for index, (_, position) in enumerate(read):
        assert list(read_since(tmp_path, "BTC", [position])) == read[index + 1 :]


def _crash_in_write(path: Path, data: bytes) -> None:
    path.with_name(f".{path.name}.4242.tmp").write_bytes(data[:100])
    raise CrashError


def _crash_once(target: object) -> object:
    calls = []

    def crash(*args: object) -> object:
        if not calls:
            calls.append(1)
            raise CrashError
        return target(*args)  # type: ignore[operator]

    return crash


@pytest.mark.parametrize(
    ("name", "replacement"),
    [
        ("write_archive", lambda: _crash_in_write),  # before the rename: a temp file is left
        ("rendered_fingerprint", lambda: _crash_once(compact_io.rendered_fingerprint)),
        ("fsync_dir", lambda: _crash_once(compact_io.fsync_dir)),  # just after the CSV went
    ],
)
def test_a_crash_at_any_step_is_finished_by_the_next_run(tmp_path, monkeypatch, name, replacement):
    records = three_days(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(compact_io, name, replacement())
        with pytest.raises(CrashError):
            compact_day(tmp_path, "BTC", CLOSED)
    age(tmp_path)

    compact_closed(tmp_path, TODAY, RecordingLog())

    assert files(tmp_path) == ["2024-02-29.parquet", "2024-03-01.csv", "2024-03-02.csv"]
    assert list(read_tape(tmp_path, "BTC", 0)) == records
    assert compact_closed(tmp_path, TODAY, RecordingLog()).done == []


def test_an_archive_that_does_not_match_the_csv_is_rewritten(tmp_path):
    records = three_days(tmp_path)
    other = tmp_path / "other"
    write(other, [trade(MIDNIGHT_MS - 2 * DAY_MS, 99)])
    compact_day(other, "BTC", CLOSED)
    stale = archive_path(tmp_path, "BTC", CLOSED)
    stale.write_bytes(archive_path(other, "BTC", CLOSED).read_bytes())
    age(tmp_path)

    assert len(compact_closed(tmp_path, TODAY, RecordingLog()).done) == 1

    assert list(read_tape(tmp_path, "BTC", 0)) == records
    stale.write_bytes(b"not parquet")
    with pytest.raises(IntegrityError, match="not a tape archive"):
        list(read_tape(tmp_path, "BTC", 0))


def test_a_torn_last_line_is_not_carried_over(tmp_path):
    records = three_days(tmp_path)
    with open(segment_path(tmp_path, "BTC", CLOSED), "ab") as handle:
        handle.write(b"T,BTC,17093")
    age(tmp_path)

    (done,) = compact_closed(tmp_path, TODAY, RecordingLog()).done

    assert done.torn_bytes == len(b"T,BTC,17093")
    assert list(read_tape(tmp_path, "BTC", 0)) == records


def test_a_corrupt_csv_is_kept_and_reported(tmp_path):
    three_days(tmp_path)
    path = segment_path(tmp_path, "BTC", CLOSED)
    path.write_bytes(path.read_bytes() + b"T,BTC,oops\n")
    log = RecordingLog()
    age(tmp_path)

    report = compact_closed(tmp_path, TODAY, log)

    assert report.done == [] and report.failed[0].startswith("BTC 2024-02-29: ")
    assert [event for event, _ in log.warnings] == ["tape_compact_failed"]
    assert files(tmp_path) == ["2024-02-29.csv", "2024-03-01.csv", "2024-03-02.csv"]


def test_retention_counts_compacted_days(tmp_path):
    days = [MIDNIGHT_MS - 3 * DAY_MS, MIDNIGHT_MS - 2 * DAY_MS, MIDNIGHT_MS - DAY_MS, MIDNIGHT_MS]
    write(tmp_path, [trade(ts, i) for i, ts in enumerate(days)])
    age(tmp_path)
    compact_closed(tmp_path, TODAY, RecordingLog())
    assert files(tmp_path)[:2] == ["2024-02-28.parquet", "2024-02-29.parquet"]

    removed = prune(tmp_path, 3, TODAY)

    assert [p.name for p in removed] == ["2024-02-28.parquet"]
    assert files(tmp_path) == ["2024-02-29.parquet", "2024-03-01.csv", "2024-03-02.csv"]


def test_ingests_hourly_prune_compacts_closed_days_in_a_child_process(tmp_path):
    import zmq

    from hlstream.common.bus_io import Publisher
    from hlstream.services.ingest.publisher import TapeFirst, open_tape

    log = RecordingLog()
    records = three_days(tmp_path)
    age(tmp_path)
    context = zmq.Context()
    out = TapeFirst(open_tape(tmp_path, log), Publisher(context, "inproc://compact"), log)
    try:
        out.prune(7, TODAY)
        compactor = out.compactor
        assert compactor is not None and compactor.wait(timeout=60) == 0
        out.prune(7, TODAY)
        assert out.compactor is compactor  # nothing left to compact: no new child
    finally:
        out.tape.close()
        out.bus.close()
        context.term()

    assert files(tmp_path) == ["2024-02-29.parquet", "2024-03-01.csv", "2024-03-02.csv"]
    assert list(read_tape(tmp_path, "BTC", 0)) == records and log.warnings == []


def test_an_archive_that_reads_back_short_is_removed_and_the_csv_kept(tmp_path, monkeypatch):
    three_days(tmp_path)
    encode = compact_io.encode_archive
    monkeypatch.setattr(
        compact_io, "encode_archive", lambda records, fp, users: encode(records[1:], fp, users)
    )
    monkeypatch.setattr(compact_io, "encode_csv", lambda text, fp: encode([], fp))  # fast path

    with pytest.raises(IntegrityError, match="does not read back as"):
        compact_day(tmp_path, "BTC", CLOSED)

    assert files(tmp_path) == ["2024-02-29.csv", "2024-03-01.csv", "2024-03-02.csv"]


def test_when_polars_parse_does_not_check_out_the_lines_are_parsed_one_by_one(
    tmp_path, monkeypatch
):
    records = three_days(tmp_path)
    empty = compact_io.encode_archive([], compact_io.Fingerprint(0, 0, ""))
    monkeypatch.setattr(compact_io, "encode_csv", lambda text, fp: empty)

    assert compact_day(tmp_path, "BTC", CLOSED).records == 6

    assert list(read_tape(tmp_path, "BTC", 0)) == records


def test_a_closed_day_written_to_in_the_last_hour_is_left_to_the_writer(tmp_path):
    three_days(tmp_path)  # just written: a feed replaying old trades, or a skewed clock

    assert not has_work(tmp_path, TODAY)
    assert compact_closed(tmp_path, TODAY, RecordingLog()).done == []
    age(tmp_path)
    assert has_work(tmp_path, TODAY)
    assert len(compact_closed(tmp_path, TODAY, RecordingLog()).done) == 1
