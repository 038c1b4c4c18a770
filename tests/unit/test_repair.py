"""`hlstream repair` (repair_io.py): pending revisions applied atomically, once; a running
writer's files refused; a conflict left alone and reported."""

from __future__ import annotations

import fcntl
import io
import os
from pathlib import Path

import pytest

from hlstream.common import inexact_io, revisions_io
from hlstream.common.config import Settings
from hlstream.common.csvrow import HEADER_LINE, Row, format_row
from hlstream.common.errors import ConfigError
from hlstream.common.inexact_io import Reason
from hlstream.common.revisions import GAP_AFTER_CLOSE, Revision
from hlstream.repair_io import run_repair
from hlstream.services.writer.dirlock import DATA_LOCK_FILE

M = 60_000
T0 = 1_764_500_040_000 - 1_764_500_040_000 % M
ROWS = [Row(T0 + k * M, "100", "101", "99", "100", "1.5") for k in range(3)]
NEW = Row(T0 + M, "100", "102", "99", "101", "2.25")


def setup(tmp_path: Path) -> tuple[Settings, Path]:
    settings = Settings(coins=("BTC",), intervals=("1m",), data_dir=tmp_path, run_dir=tmp_path)
    path = tmp_path / "btc_1m_data.csv"
    path.write_text(HEADER_LINE + "".join(map(format_row, ROWS)))
    inexact_io.record(path, [(T0 + M, Reason.GAP_AFTER_CLOSE), (T0 + 2 * M, Reason.PARTIAL)])
    revisions_io.append(path, [Revision(ROWS[1], NEW, GAP_AFTER_CLOSE, T0 + 10 * M)])
    return settings, path


def test_repair_applies_a_revision_once_and_clears_its_journal_entry(tmp_path: Path):
    settings, path = setup(tmp_path)
    out = io.StringIO()
    assert run_repair(settings, out) == 0
    assert path.read_text() == HEADER_LINE + "".join(map(format_row, [ROWS[0], NEW, ROWS[2]]))
    assert inexact_io.read_journal(path) == {T0 + 2 * M: "partial"}
    assert "1 row revised, 0 already, 0 conflicts" in out.getvalue()
    inode = os.stat(path).st_ino
    again = io.StringIO()
    assert run_repair(settings, again) == 0
    assert os.stat(path).st_ino == inode, "nothing to change: the file is not replaced"
    assert "0 rows revised, 1 already" in again.getvalue()


def test_repair_refuses_the_files_of_a_running_writer(tmp_path: Path):
    settings, path = setup(tmp_path)
    before = path.read_bytes()
    with open(tmp_path / DATA_LOCK_FILE, "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="running writer"):
            run_repair(settings, io.StringIO())
    assert path.read_bytes() == before


def test_a_row_matching_neither_side_is_a_conflict_left_alone(tmp_path: Path):
    settings, path = setup(tmp_path)
    changed = [ROWS[0], Row(T0 + M, "1", "1", "1", "1", "1"), ROWS[2]]
    path.write_text(HEADER_LINE + "".join(map(format_row, changed)))
    out = io.StringIO()
    assert run_repair(settings, out) == 1
    assert "conflict" in out.getvalue()
    assert path.read_text() == HEADER_LINE + "".join(map(format_row, changed))
    assert T0 + M in inexact_io.read_journal(path), "an unrepaired row keeps its entry"


def test_repair_with_coins_all_repairs_every_file_of_the_intervals(tmp_path: Path):
    _, path = setup(tmp_path)
    purr = tmp_path / "purr%2fusdc_1m_data.csv"
    purr.write_text(HEADER_LINE + "".join(map(format_row, ROWS)))
    revisions_io.append(purr, [Revision(ROWS[1], NEW, GAP_AFTER_CLOSE, T0 + 10 * M)])
    settings = Settings(coins=("all",), intervals=("1m",), data_dir=tmp_path, run_dir=tmp_path)
    out = io.StringIO()
    assert run_repair(settings, out) == 0
    for repaired in (path, purr):
        assert repaired.read_text() == HEADER_LINE + "".join(
            map(format_row, [ROWS[0], NEW, ROWS[2]])
        )
    assert out.getvalue().count("1 row revised") == 2
