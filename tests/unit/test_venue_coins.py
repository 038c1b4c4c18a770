"""`hlstream verify --venue` with `coins = "all"` (venue_io.py): the coins with files in the
data dir, as the venue spells them, and no request for a coin we have no rows for."""

from __future__ import annotations

import io
from pathlib import Path

from hlstream.common.config import Settings
from hlstream.common.csvrow import HEADER_LINE, Row, format_row
from hlstream.common.messages import Bar
from hlstream.common.status import FileStatus, StageStatus
from hlstream.common.status_io import write_status
from hlstream.services.writer.audit import AuditRequest
from hlstream.venue_io import file_coins, run_venue_audit

M = 60_000
T0 = 1_764_500_040_000 - 1_764_500_040_000 % M
ROW = Row(T0, "100", "101", "99", "100", "1.5")


def data_dir(tmp_path: Path) -> Settings:
    """Files of PURR/USDC and xyz:TSLA (named by the writer's status, which also names ETH, a
    coin without a file) and one of a coin nothing names."""
    for name in ("purr%2fusdc_1m_data.csv", "xyz%3atsla_1m_data.csv", "ghost_1m_data.csv"):
        (tmp_path / name).write_text(HEADER_LINE + format_row(ROW))
    files = {
        f"{coin}.csv": FileStatus(coin, "1m", None) for coin in ("PURR/USDC", "xyz:TSLA", "ETH")
    }
    write_status(tmp_path, StageStatus("writer", T0, 1, "s", {}, files=files))
    return Settings(coins=("all",), intervals=("1m",), data_dir=tmp_path, run_dir=tmp_path)


def test_all_means_the_coins_with_files_spelled_as_the_venue_spells_them(tmp_path: Path):
    err = io.StringIO()
    assert file_coins(data_dir(tmp_path), err) == ("PURR/USDC", "xyz:TSLA")
    assert "ghost_1m_data.csv: no tape names its coin; skipped" in err.getvalue()
    listed = Settings(coins=("BTC",), intervals=("1m",), data_dir=tmp_path, run_dir=tmp_path)
    assert file_coins(listed, err) == ("BTC",)


def test_verify_venue_all_asks_only_for_coins_with_rows(tmp_path: Path):
    asked: list[str] = []

    def fetch(request: AuditRequest) -> list[Bar]:
        asked.append(request.coin)
        return [Bar(request.coin, "1m", T0, "100", "101", "99", "100", "1.5", 3, True, "rest")]

    out, err = io.StringIO(), io.StringIO()
    assert run_venue_audit(data_dir(tmp_path), None, None, out, err, fetch) == 0
    assert sorted(asked) == ["PURR/USDC", "xyz:TSLA"]
    assert "2 files, 2 rows audited: 2 matched" in err.getvalue()
