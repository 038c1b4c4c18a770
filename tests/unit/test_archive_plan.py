"""Which tape files a compaction touches (tape/archive.py)."""

from __future__ import annotations

from hlstream.common.tape.archive import CompactionPlan, DayPlan, is_closed, plan_compaction


def test_a_day_is_closed_once_older_than_yesterday():
    assert is_closed("2024-02-29", "2024-03-02")
    assert not is_closed("2024-03-01", "2024-03-02")
    assert not is_closed("2024-03-02", "2024-03-02")


def test_plan_compacts_closed_csv_days_verifies_interrupted_ones_and_drops_temp_files():
    names = [
        "2024-02-27.parquet",  # done
        "2024-02-28.csv",
        "2024-02-28.parquet",  # interrupted after the rename
        "2024-02-29.csv",
        "2024-03-01.csv",  # yesterday: still open
        "2024-03-02.csv",
        ".2024-02-29.parquet.4242.tmp",
        ".2024-03-02.csv.swp",  # not ours
        "notes.txt",
    ]

    assert plan_compaction(names, "2024-03-02") == CompactionPlan(
        [DayPlan("2024-02-28", archived=True), DayPlan("2024-02-29", archived=False)],
        [".2024-02-29.parquet.4242.tmp"],
    )
