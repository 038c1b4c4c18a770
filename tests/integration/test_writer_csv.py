"""CsvFile against a real filesystem: header, torn tail, tail reads, flock, failed writes."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from hlstream.common.config import Settings, prepare_dirs, validate
from hlstream.common.csvrow import format_row
from hlstream.common.errors import IntegrityError, TransientError
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.services.writer import core
from hlstream.services.writer.csvfile_io import CsvFile, WriteFailedError
from hlstream.services.writer.store import Store

M = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % M
HEADER = "Datetime,Open,High,Low,Close,Volume\n"
ROOT = Path(__file__).parents[2]


def bar(k: int, close: str = "10.5") -> Bar:
    return Bar("BTC", "1m", T0 + k * M, "10.0", "11.0", "9.5", close, "1.25", 3, True, "ws")


def open_csv(path: Path) -> CsvFile:
    return CsvFile(path, EventLog("writer"), M).open()


def test_the_file_is_created_with_the_exact_header_by_its_first_append(tmp_path: Path) -> None:
    path = tmp_path / "btc_1m_data.csv"
    handle = open_csv(path)
    assert not path.exists(), "a file with no row yet is not created"
    assert handle.last_row() is None

    handle.append([bar(0)])

    assert path.read_text().startswith(HEADER)
    assert path.read_text().count("\n") == 2
    handle.close()


def test_foreign_header_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "btc_1m_data.csv"
    path.write_text("time,price\n1,2\n")
    with pytest.raises(IntegrityError):
        open_csv(path)
    assert path.read_text() == "time,price\n1,2\n"


def test_torn_tail_is_cut_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "btc_1m_data.csv"
    good = HEADER + format_row(bar(0))
    path.write_text(good + "2023-11-14 22:14:00,10.0,1")
    with caplog.at_level(logging.WARNING, logger="hlstream"):
        handle = open_csv(path)
    assert path.read_text() == good
    cuts = [r for r in caplog.records if getattr(r, "event", "") == "torn_tail_cut"]
    assert cuts and cuts[0].fields["bytes"] == len("2023-11-14 22:14:00,10.0,1")
    assert handle.last_row() == core.row_of(bar(0))
    handle.close()


def test_torn_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "btc_1m_data.csv"
    path.write_text(HEADER[:10])
    open_csv(path).close()
    assert path.read_text() == HEADER


def test_last_row_reads_only_the_tail_of_a_big_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "btc_1m_data.csv"
    rows = "".join(format_row(bar(k)) for k in range(50_000))
    path.write_text(HEADER + rows)
    handle = open_csv(path)
    read_bytes = 0
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        nonlocal read_bytes
        read_bytes += n
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", counting_pread)
    assert handle.last_row() == core.row_of(bar(49_999))
    assert read_bytes <= 2 * 4096
    handle.close()


def test_append_drops_rows_at_or_before_last_row(tmp_path: Path) -> None:
    path = tmp_path / "btc_1m_data.csv"
    handle = open_csv(path)
    assert handle.append([bar(0), bar(1)]) == [bar(0), bar(1)]
    assert handle.append([bar(0), bar(1), bar(2)]) == [bar(2)]
    assert handle.append([bar(1)]) == []
    lines = path.read_text().splitlines()
    assert lines[1:] == [format_row(bar(k)).strip() for k in range(3)]
    handle.close()


def test_append_refuses_to_leave_a_hole(tmp_path: Path) -> None:
    handle = open_csv(tmp_path / "btc_1m_data.csv")
    handle.append([bar(0)])
    with pytest.raises(IntegrityError):
        handle.append([bar(2)])
    handle.close()


def test_second_handle_sees_rows_of_first(tmp_path: Path) -> None:
    path = tmp_path / "btc_1m_data.csv"
    first, second = open_csv(path), open_csv(path)
    first.append([bar(0), bar(1)])
    assert second.append([bar(0), bar(1), bar(2)]) == [bar(2)]
    assert len(path.read_text().splitlines()) == 4
    first.close()
    second.close()


def test_shared_lock_reader_sees_only_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "btc_1m_data.csv"
    handle = open_csv(path)
    handle.append([bar(0)])
    done = threading.Event()
    torn: list[int] = []

    def reader() -> None:
        with path.open("rb") as stream:
            while not done.is_set():
                fcntl.flock(stream.fileno(), fcntl.LOCK_SH)
                stream.seek(0)
                data = stream.read()
                fcntl.flock(stream.fileno(), fcntl.LOCK_UN)
                if not data.endswith(b"\n"):
                    torn.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    for k in range(1, 3001, 30):
        handle.append([bar(k + j) for j in range(30)])
    done.set()
    thread.join()
    assert torn == []
    assert len(path.read_text().splitlines()) == 3002
    handle.close()


def test_failed_write_leaves_file_exactly_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "btc_1m_data.csv"
    handle = open_csv(path)
    handle.append([bar(0)])
    before = path.read_bytes()
    real_write = os.write

    def half_then_fail(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(WriteFailedError):
        handle.append([bar(1), bar(2)])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert handle.append([bar(1)]) == [bar(1)]
    handle.close()


def test_failed_fsync_truncates_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "btc_1m_data.csv"
    handle = open_csv(path)
    handle.append([bar(0)])
    before = path.read_bytes()
    calls = {"n": 0}
    real_fsync = os.fsync

    def fail_once(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_once)
    with pytest.raises(WriteFailedError):
        handle.append([bar(1)])
    assert path.read_bytes() == before
    handle.close()


_FSIZE_SCRIPT = """
import resource, signal, sys
from pathlib import Path
from hlstream.common.errors import TransientError
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.services.writer.csvfile_io import CsvFile
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = Path(sys.argv[1])
handle = CsvFile(path, EventLog("writer"), 60000).open()
size = path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, size + 100))
bars = [Bar("BTC", "1m", {t0} + k * 60000, "1.0", "1.0", "1.0", "1.0", "0.0", 0, True, "ws")
        for k in range(1, 10)]
try:
    handle.append(bars)
except TransientError:
    sys.exit(3)
sys.exit(0)
"""


def test_file_size_limit_leaves_no_half_line(tmp_path: Path) -> None:
    path = tmp_path / "btc_1m_data.csv"
    handle = open_csv(path)
    handle.append([bar(0)])
    handle.close()
    before = path.read_bytes()
    script = _FSIZE_SCRIPT.replace("{t0}", str(T0))
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, timeout=30
    )
    assert result.returncode == 3, result.stderr.decode()
    assert b"csv_write_failed" in result.stderr
    assert path.read_bytes() == before


# ---- Store in-process against a fake InfoClient --------------------------------------------


class FakeInfo:
    """Answers candleSnapshot from a dict of candles, or fails when `down`."""

    def __init__(self, closes: dict[int, str]) -> None:
        self.closes = closes
        self.down = False
        self.calls = 0

    def post(self, body: dict[str, Any]) -> Any:
        self.calls += 1
        if self.down:
            raise TransientError("connection refused")
        req = body["req"]
        return [
            {
                "t": t,
                "T": t + M - 1,
                "s": "BTC",
                "i": "1m",
                "o": c,
                "h": c,
                "l": c,
                "c": c,
                "v": "1.0",
                "n": 1,
            }
            for t, c in sorted(self.closes.items())
            if req["startTime"] - req["startTime"] % M <= t <= req["endTime"]
        ]


def make_writer(tmp_path: Path, info: FakeInfo, now_ms: int) -> Store:
    settings = validate(
        Settings(
            coins=("BTC",),
            intervals=("1m",),
            data_dir=tmp_path / "data",
            run_dir=tmp_path / "run",
            backfill_hours=0.1,
            backoff_base_seconds=0.01,
        )
    )
    prepare_dirs(settings)
    writer = Store(
        settings,
        StopFlag(),
        EventLog("writer"),
        info=info,
        now_ms=lambda: now_ms,
        sleep=lambda _s: None,
    )
    writer.open_files()
    return writer


def test_backfill_is_idempotent_and_carries_forward_omitted_windows(tmp_path: Path) -> None:
    now = T0 + 6 * M + 30_000  # window T0+6M is unfinished
    info = FakeInfo({T0: "1.5", T0 + 2 * M: "2.5", T0 + 6 * M: "9.0"})
    writer = make_writer(tmp_path, info, now)
    path = tmp_path / "data" / "btc_1m_data.csv"
    writer.backfill()
    first = path.read_text()
    writer.backfill()
    assert path.read_text() == first
    closes = [line.split(",")[4] for line in first.splitlines()[1:]]
    assert closes == ["1.5", "1.5", "2.5", "2.5", "2.5", "2.5"]  # T0..T0+5M, not T0+6M


def test_hole_with_rest_down_writes_nothing_and_does_not_ack(tmp_path: Path) -> None:
    info = FakeInfo({T0: "1.5"})
    writer = make_writer(tmp_path, info, T0 + M + 5_000)  # T0's window has settled
    writer.backfill()
    path = tmp_path / "data" / "btc_1m_data.csv"
    before = path.read_bytes()
    info.down = True
    assert writer.handle_bar(bar(3)) is False
    assert path.read_bytes() == before
    assert writer.counters.rest_errors == 1
    info.down = False
    info.closes[T0 + 2 * M] = "10.0"
    assert writer.handle_bar(bar(3)) is True
    closes = [line.split(",")[4] for line in path.read_text().splitlines()[1:]]
    assert closes == ["1.5", "1.5", "10.0", "10.5"]
    assert writer.handle_bar(bar(3)) is True  # duplicate: acked again, nothing written
    assert writer.counters.duplicates == 1
