"""`hlstream rebuild` and `verify` on a trade tape written here, no pipeline (subprocess, fast)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hlstream.common.messages import Trade
from hlstream.common.tape.writer_io import TapeWriter
from tests.integration.test_tape_archive import age
from tests.integration.test_tape_io import RecordingLog

T0 = 1_700_000_040_000  # 2023-11-14 22:14:00, aligned to 5 s
WINDOWS = 12


def hlstream(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, HLSTREAM_DATA_DIR=str(tmp_path / "data"), HLSTREAM_RUN_DIR=str(tmp_path / "run")
    )
    env.pop("HLSTREAM_COINS", None)
    return subprocess.run(
        [sys.executable, "-m", "hlstream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_tape(data_dir: Path) -> None:
    """One BTC trade at the start of each of WINDOWS 5 s windows, and one to close the last."""
    trades = [
        Trade("BTC", "buy", f"{100 + i}.5", "0.25", T0 + i * 5_000, 7_000 + i, "0x0")
        for i in range(WINDOWS + 1)
    ]
    with TapeWriter(data_dir, RecordingLog(), fsync=False) as writer:
        writer.append(trades)
        writer.commit()


def test_rebuild_repairs_a_duplicate_row_that_check_and_verify_flag(tmp_path):
    data = tmp_path / "data"
    write_tape(data)
    assert hlstream(tmp_path, "rebuild", "--interval", "5s").returncode == 0
    path = data / "btc_5s_data.csv"
    good = path.read_text()
    lines = good.splitlines(keepends=True)
    assert len(lines) == 1 + WINDOWS
    path.write_text("".join(lines[:6] + [lines[5]] + lines[6:]))  # line 7 repeats line 6

    verify = hlstream(tmp_path, "verify", str(path))
    assert verify.returncode == 1 and f"{path}:7: duplicate:" in verify.stdout
    check = hlstream(tmp_path, "rebuild", "--interval", "5s", "--check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stdout.startswith(f"{path}:7: duplicate: 2023-11-14 22:14:20 appears twice")
    assert "; 1 defect" in check.stdout

    fixed = hlstream(tmp_path, "rebuild", "--interval", "5s")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"written {path}" in fixed.stdout
    assert path.read_text() == good
    # The tape begins at the first window's start, so it cannot vouch for that window whole
    # (the venue's replay may have cut its block): that row is journaled, and nothing else.
    verified = hlstream(tmp_path, "verify", str(path)).stdout.splitlines()
    assert verified == [
        f"{path}:2: inexact: row 2023-11-14 22:14:00 is not exact: partial ({path.name}.inexact)"
    ], verified
    again = hlstream(tmp_path, "rebuild", "--interval", "5s", "--check")
    assert again.returncode == 0 and "; 0 defects" in again.stdout


def test_rebuild_takes_the_coins_the_tape_has_and_lists_missing_rows_once(tmp_path):
    write_tape(tmp_path / "data")
    check = hlstream(tmp_path, "rebuild", "--interval", "15s", "--check")
    assert check.returncode == 1, check.stdout + check.stderr
    path = tmp_path / "data" / "btc_15s_data.csv"
    assert check.stdout.splitlines() == [
        f"{path}:2: missing: 4 windows from 2023-11-14 22:14:00 to 2023-11-14 22:14:45 "
        "are not in the file",
        "BTC 15s: 4 windows from the tape, 0 same, 0 differ, 4 missing, 0 kept "
        "(tape not whole there); 1 defect",
    ]
    assert "no trade tape for ETH, SOL, XRP, DOGE, LINK, HYPE; skipped" in check.stderr
    assert not path.exists()


def test_rebuild_cuts_a_torn_line_orders_rows_and_keeps_rows_older_than_the_tape(tmp_path):
    data = tmp_path / "data"
    write_tape(data)
    assert hlstream(tmp_path, "rebuild", "--interval", "5s").returncode == 0
    path = data / "btc_5s_data.csv"
    header, *rows = path.read_text().splitlines(keepends=True)
    older = "2023-11-14 22:13:50,99.0,99.0,99.0,99.0,1.0\n"  # before the tape: kept
    rows[2], rows[3] = rows[3], rows[2]
    path.write_text(header + older + "".join(rows[:-1]) + rows[-1][:12])

    check = hlstream(tmp_path, "rebuild", "--interval", "5s", "--check")
    assert check.returncode == 1
    kinds = [line.split(": ")[1] for line in check.stdout.splitlines()[:-1]]
    assert kinds == ["order", "missing", "torn"], check.stdout
    assert f"{path}:14: torn: last line has no newline (12 bytes)" in check.stdout
    assert "1 missing window between 2023-11-14 22:13:50 and 2023-11-14 22:14:00" in check.stderr

    fixed = hlstream(tmp_path, "rebuild", "--interval", "5s")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert path.read_text() == header + older + "".join(sorted(rows))


def test_rebuild_over_a_compacted_day_writes_the_same_rows(tmp_path):
    data = tmp_path / "data"
    write_tape(data)
    assert hlstream(tmp_path, "rebuild", "--interval", "5s").returncode == 0
    path = data / "btc_5s_data.csv"
    rows = path.read_text()
    age(data)

    compact = hlstream(tmp_path, "compact")

    assert compact.returncode == 0, compact.stdout + compact.stderr
    assert compact.stdout.startswith(f"compacted BTC 2023-11-14: {WINDOWS + 1} records, ")
    assert sorted(os.listdir(data / "tape" / "btc")) == ["2023-11-14.parquet"]
    check = hlstream(tmp_path, "rebuild", "--interval", "5s", "--check")
    assert check.returncode == 0 and "; 0 defects" in check.stdout, check.stdout + check.stderr
    path.unlink()
    rebuilt = hlstream(tmp_path, "rebuild", "--interval", "5s")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert path.read_text() == rows
    assert hlstream(tmp_path, "compact").stdout == ""
