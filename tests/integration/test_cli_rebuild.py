"""`hlstream rebuild` and `verify` on a trade tape written here, no pipeline (subprocess, fast)."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from hlstream import rebuild_io
from hlstream.common.config import Settings
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.compact_io import compact_day
from hlstream.common.tape.format import segment_day
from hlstream.common.tape.writer_io import TapeWriter
from hlstream.rebuild_io import Request, run_rebuild
from tests.integration.test_tape_archive import age
from tests.integration.test_tape_io import MIDNIGHT_MS, RecordingLog

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


USERS = ("0x" + "ab" * 20, "0x" + "Cd" * 20)


def write_tape(data_dir: Path) -> None:
    """One BTC trade at the start of each of WINDOWS 5 s windows, and one to close the last;
    odd trades carry their users."""
    trades = [
        Trade(
            "BTC",
            "buy",
            f"{100 + i}.5",
            "0.25",
            T0 + i * 5_000,
            7_000 + i,
            "0x0",
            USERS if i % 2 else None,
        )  # fmt: skip
        for i in range(WINDOWS + 1)
    ]
    with closing(TapeWriter(data_dir, RecordingLog(), fsync=False)) as writer:
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


def write_days(data_dir: Path, coins: tuple[str, ...], days: int) -> None:
    """Trades of each coin over `days` UTC days as the venue sends them: frames of a few
    trades, some sharing a time, some a second out of order; quiet hours; a gap marker on the
    second day; prices and sizes with any number of decimals, trailing zeros included."""
    rng = random.Random(5)
    records: list[Trade | Gap] = []
    for index, coin in enumerate(coins):
        ts, tid, ticks = MIDNIGHT_MS + 1, index * 10**6, 6_000_000
        while ts < MIDNIGHT_MS + days * 86_400_000:
            frame = rng.randint(1, 4)
            for _ in range(frame):
                ticks += rng.choice((-3, 0, 2))
                price = f"{ticks // 100}.{ticks % 100:02d}"
                units, scale = str(rng.randint(1, 10**6)).zfill(8), rng.randint(0, 7)
                size = f"{units[: 8 - scale]}.{units[8 - scale :]}" if scale else units
                stamp = ts - rng.choice((0, 0, 0, 1_000))
                side = "buy" if rng.random() < 0.5 else "sell"
                records.append(Trade(coin, side, price, size, stamp, tid, f"0x{tid:x}"))
                tid += 1
            ts += rng.choice(
                (900, 20_000, 60_000, 150_000, 3_600_000 if rng.random() < 0.01 else 0)
            )
        day2 = MIDNIGHT_MS + 86_400_000
        records.append(Gap(coin, day2 + 3_600_000, day2 + 3_700_000, "reconnect"))
    with closing(TapeWriter(data_dir, RecordingLog(), fsync=False)) as writer:
        writer.append(sorted(records, key=lambda r: r.ts_ms if isinstance(r, Trade) else r.from_ms))
        writer.commit()


def test_rebuild_over_compacted_and_csv_days_writes_the_rows_of_the_csv_tape(tmp_path, monkeypatch):
    coins = ("BTC", "ETH")
    csv_root, mixed_root = tmp_path / "csv", tmp_path / "mixed"
    write_days(csv_root / "data", coins, days=3)
    shutil.copytree(csv_root / "data", mixed_root / "data")
    for coin in coins:  # the first two days compacted, the third still CSV
        for day in (segment_day(MIDNIGHT_MS), segment_day(MIDNIGHT_MS + 86_400_000)):
            compact_day(mixed_root / "data", coin, day)
    by_csv = hlstream(csv_root, "rebuild", "--interval", "1m", "--coins", "BTC,ETH")
    assert by_csv.returncode == 0, by_csv.stdout + by_csv.stderr

    def per_record(*args: object) -> None:
        pytest.fail("a tape with compacted days went record by record")

    monkeypatch.setattr(rebuild_io, "tape_bars", per_record)
    settings = Settings(data_dir=mixed_root / "data", run_dir=mixed_root / "run", coins=coins)
    request = Request("1m", coins, None, None, check=False)
    assert run_rebuild(settings, request, io.StringIO()) == 0

    for coin in coins:
        name = f"{coin.lower()}_1m_data.csv"
        rows = (csv_root / "data" / name).read_bytes()
        assert rows.count(b"\n") > 3 * 1_400
        assert (mixed_root / "data" / name).read_bytes() == rows
        journal = (csv_root / "data" / f"{name}.inexact").read_bytes()
        assert (mixed_root / "data" / f"{name}.inexact").read_bytes() == journal
    check = hlstream(mixed_root, "rebuild", "--interval", "1m", "--coins", "BTC,ETH", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("; 0 defects") == 2
