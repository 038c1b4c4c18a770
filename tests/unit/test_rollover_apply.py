"""The writer applies pending revisions itself at the UTC day rollover when
`audit_apply_at_rollover` is on (shell.py `Writer.rollover`, store.py `apply_revisions`):
closed days only, once, atomically, and the files' appends go on in the new file, its own and
a concurrent backfill's (csvfile_io.py)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import zmq

from hlstream.common import inexact_io, revisions_io
from hlstream.common.config import Settings
from hlstream.common.csvrow import HEADER_LINE, Row, format_row
from hlstream.common.inexact_io import Reason
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar, Envelope, Inexact, encode_message
from hlstream.common.revisions import VENUE_MISMATCH, Revision
from hlstream.common.stage_io import Stage
from hlstream.services.writer.csvfile_io import CsvFile
from hlstream.services.writer.shell import DAY_MS, Writer

M = 60_000
MIDNIGHT = 1_764_547_200_000  # 2025-12-01 00:00 UTC
assert MIDNIGHT % DAY_MS == 0
ROWS = [Row(MIDNIGHT + k * M, "100", "101", "99", "100", "1.5") for k in (-2, -1, 0)]
YESTERDAY = Row(MIDNIGHT - M, "100", "102", "99", "101", "2.25")  # the venue's 23:59
TODAY = Row(MIDNIGHT, "100", "103", "99", "102", "3")  # the venue's 00:00, a day still open


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000


def setup(tmp_path: Path, on: bool) -> tuple[Writer, Clock, Path]:
    settings = Settings(
        coins=("BTC",),
        intervals=("1m",),
        data_dir=tmp_path,
        run_dir=tmp_path,
        audit_apply_at_rollover=on,
    )
    path = tmp_path / "btc_1m_data.csv"
    path.write_text(HEADER_LINE + "".join(map(format_row, ROWS)))
    inexact_io.record(path, [(MIDNIGHT - M, Reason.GAP_AFTER_CLOSE)])
    revisions_io.append(
        path,
        [
            Revision(ROWS[1], YESTERDAY, VENUE_MISMATCH, MIDNIGHT - 10_000),
            Revision(ROWS[2], TODAY, VENUE_MISMATCH, MIDNIGHT + 2 * M),
        ],
    )
    clock = Clock(MIDNIGHT - 5_000)
    context = zmq.Context.instance()
    writer = Writer(Stage(settings, StopFlag(), EventLog("writer"), clock, context))
    writer.store.open_files()
    return writer, clock, path


def bar(start_ms: int) -> Bar:
    return Bar("BTC", "1m", start_ms, "100", "100", "100", "100", "0.5", 1, True, "ws")


def test_the_rollover_applies_the_closed_days_revisions_once(tmp_path: Path):
    writer, clock, path = setup(tmp_path, on=True)
    backfill = CsvFile(path, EventLog("backfill"), M).open()  # another process's descriptor
    try:
        writer.rollover()
        assert path.read_text() == HEADER_LINE + "".join(map(format_row, ROWS)), "same day"
        clock.ms = MIDNIGHT + 3 * M
        writer.rollover()
        expected = HEADER_LINE + "".join(map(format_row, [ROWS[0], YESTERDAY, ROWS[2]]))
        assert path.read_text() == expected, "23:59 revised; today's 00:00 waits for its day"
        assert inexact_io.read_journal(path) == {}, "the repaired row is the venue's candle"

        inode = os.stat(path).st_ino
        writer.rollover()
        writer.store.apply_revisions(MIDNIGHT)
        assert os.stat(path).st_ino == inode and path.read_text() == expected, "idempotent"

        handle = writer.store.files[("BTC", "1m")]
        assert [b.start_ms for b in handle.append([bar(MIDNIGHT + M)])] == [MIDNIGHT + M]
        assert backfill.append([bar(MIDNIGHT + M), bar(MIDNIGHT + 2 * M)]) == [
            bar(MIDNIGHT + 2 * M)
        ], "the backfill's descriptor followed the new file and saw the writer's row"
        lines = path.read_text().splitlines()
        assert lines[1:3] == [format_row(ROWS[0]).strip(), format_row(YESTERDAY).strip()]
        assert len(lines) == 1 + 5

        clock.ms = MIDNIGHT + DAY_MS + M
        writer.rollover()
        assert path.read_text().splitlines()[3] == format_row(TODAY).strip(), "the next midnight"
    finally:
        backfill.close()
        writer.store.close()


def test_without_the_setting_the_rollover_leaves_the_file_alone(tmp_path: Path):
    writer, clock, path = setup(tmp_path, on=False)
    try:
        clock.ms = MIDNIGHT + DAY_MS + M
        writer.rollover()
        assert path.read_text() == HEADER_LINE + "".join(map(format_row, ROWS))
        assert len(revisions_io.read(path)) == 2
    finally:
        writer.store.close()


def test_a_misaligned_inexact_notice_is_malformed_and_not_acked(tmp_path: Path):
    writer, _, path = setup(tmp_path, on=False)
    notice = Inexact("BTC", "1m", MIDNIGHT + 1, MIDNIGHT + M, "gap")
    payload = encode_message(Envelope("s", 1), notice)
    sent: list[list[bytes]] = []
    socket = SimpleNamespace(send_multipart=lambda frames, flags=0: sent.append(frames))
    before = inexact_io.journal_path(path).read_bytes()
    writer.on_frames(socket, [b"id", b"inexact", payload])  # type: ignore[arg-type]
    assert writer.counters.malformed == 1 and not sent
    assert inexact_io.journal_path(path).read_bytes() == before
    aligned = Inexact("BTC", "1m", MIDNIGHT, MIDNIGHT + M, "gap")
    writer.on_frames(socket, [b"id", b"inexact", encode_message(Envelope("s", 2), aligned)])  # type: ignore[arg-type]
    assert len(sent) == 1 and writer.counters.malformed == 1
