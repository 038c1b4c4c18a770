"""`hlstream verify --venue` against the fake exchange's candles: it finds exactly the rows that
differ (a 1m row, and a minute of 5s rows through its 1m candle), leaves the rest alone, and
lists pending revisions."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from hlstream.common import revisions_io
from hlstream.common.csvrow import HEADER, Row
from hlstream.common.revisions import VENUE_MISMATCH, Revision
from hlstream.common.timebucket import format_window
from hlstream.sim.exchange import FakeExchange
from hlstream.sim.market import truth_rows
from tests.support.exchange import exchange_fixture

M, S5 = 60_000, 5_000
ROOT = Path(__file__).resolve().parents[2]

exchange = exchange_fixture(
    coins=["BTC"], seed=7, history_hours=0.5, history_every_s=2.0, paused=True, history_gap_s=150
)


def write_csv(path: Path, rows: list[tuple[int, str, str, str, str, str]]) -> None:
    lines = [HEADER] + [",".join((format_window(r[0]), *r[1:])) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def verify_venue(exchange: FakeExchange, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        HLSTREAM_INFO_URL=exchange.info_url,
        HLSTREAM_DATA_DIR=str(tmp_path / "data"),
        HLSTREAM_RUN_DIR=str(tmp_path / "run"),
    )
    return subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "verify", "--venue"]
        + ["--coins", "BTC", "--intervals", "1m,5s"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_venue_finds_exactly_the_rows_that_differ(exchange: FakeExchange, tmp_path: Path):
    trades = exchange.trades("BTC")
    first = trades[0]["time"] - trades[0]["time"] % M + M
    last = trades[-1]["time"] - trades[-1]["time"] % M  # a minute before the end
    rows_1m = truth_rows(trades, M, first, last)
    rows_5s = truth_rows(trades, S5, first, last)
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "btc_1m_data.csv", rows_1m)
    write_csv(data / "btc_5s_data.csv", rows_5s)

    clean = verify_venue(exchange, tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"{len(rows_1m) + len(rows_5s)} rows audited" in clean.stderr
    assert "0 mismatched" in clean.stderr

    bad_1m = 7
    truth = Row(*rows_1m[bad_1m])
    rows_1m[bad_1m] = (*rows_1m[bad_1m][:5], str(Decimal(truth.volume) + 1))
    short_5s = 30  # inside the third minute
    rows_5s[short_5s] = (*rows_5s[short_5s][:5], "0.0" if rows_5s[short_5s][5] != "0.0" else "1")
    write_csv(data / "btc_1m_data.csv", rows_1m)
    write_csv(data / "btc_5s_data.csv", rows_5s)
    wrong = Row(*rows_1m[bad_1m])
    revisions_io.append(data / "btc_1m_data.csv", [Revision(wrong, truth, VENUE_MISMATCH, last)])

    found = verify_venue(exchange, tmp_path)
    assert found.returncode == 1
    mismatches = [line for line in found.stdout.splitlines() if ": venue_mismatch: " in line]
    assert len(mismatches) == 2, found.stdout
    assert mismatches[0].startswith(f"{data / 'btc_1m_data.csv'}:{bad_1m + 2}: ")
    assert "volume" in mismatches[0]
    minute_line = 2 + (short_5s // 12) * 12  # the minute's first 5s row
    assert mismatches[1].startswith(f"{data / 'btc_5s_data.csv'}:{minute_line}: ")
    assert "(12 rows)" in mismatches[1]
    revised = [line for line in found.stdout.splitlines() if ": revised: " in line]
    assert len(revised) == 1 and f"new {truth.open} " in revised[0], found.stdout
    assert revised[0].startswith(f"{data / 'btc_1m_data.csv'}:{bad_1m + 2}: ")
    assert "1 revision pending" in found.stderr
    assert "1 mismatched" not in found.stderr and "13 mismatched" in found.stderr
