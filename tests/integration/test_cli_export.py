"""`hlstream export` on a tape and bar files written here (subprocess, fast)."""

from __future__ import annotations

from contextlib import closing

import polars as pl

from hlstream.common.messages import Gap
from hlstream.common.tape.writer_io import TapeWriter
from tests.integration.test_cli_rebuild import T0, USERS, WINDOWS, hlstream, write_tape
from tests.integration.test_tape_archive import age
from tests.integration.test_tape_io import RecordingLog

END = T0 + WINDOWS * 5_000  # the newest trade's time


def test_export_trades_over_a_compacted_day_keeps_exact_text(tmp_path):
    data = tmp_path / "data"
    write_tape(data)
    age(data)
    assert hlstream(tmp_path, "compact").returncode == 0
    out = tmp_path / "btc.parquet"

    done = hlstream(
        tmp_path,
        "export",
        "trades",
        "--coins",
        "BTC",
        "--from",
        str(T0 + 1),
        "--to",
        str(END),
        "--out",
        str(out),
    )

    assert done.returncode == 0, done.stdout + done.stderr
    frame = pl.read_parquet(out)
    assert frame.columns == [
        "coin", "ts_ms", "tid", "side", "price", "size", "hash", "buyer", "seller"
    ]  # fmt: skip
    users = [(b, s) for b, s in zip(frame["buyer"], frame["seller"], strict=True)]
    assert users == [USERS if i % 2 else (None, None) for i in range(1, WINDOWS)]
    assert frame["price"].to_list() == [f"{100 + i}.5" for i in range(1, WINDOWS)]
    assert frame["ts_ms"].to_list() == [T0 + i * 5_000 for i in range(1, WINDOWS)]


def test_export_refuses_a_range_the_tape_does_not_hold_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    write_tape(data)
    out = tmp_path / "btc.csv"
    before = ["--from", str(T0 - 60_000), "--to", str(END)]
    after = ["--from", str(T0 + 1), "--to", str(END + 60_000)]

    for span in (before, after):
        refused = hlstream(
            tmp_path,
            "export",
            "trades",
            "--coins",
            "BTC",
            *span,
            "--format",
            "csv",
            "--out",
            str(out),
        )
        assert refused.returncode == 1 and "not written: BTC: the tape holds" in refused.stderr
    with closing(TapeWriter(data, RecordingLog(), fsync=False)) as writer:
        writer.append([Gap("BTC", T0 + 7_000, T0 + 8_000, "reconnect")])
        writer.commit()
    gap = hlstream(
        tmp_path,
        "export",
        "trades",
        "--coins",
        "BTC",
        *after[:2],
        "--to",
        str(END),
        "--out",
        str(out),
    )
    assert gap.returncode == 1 and "the tape lacks trades from" in gap.stderr
    assert not out.exists()


def test_export_bars_as_csv_and_refuses_windows_the_file_lacks(tmp_path):
    data = tmp_path / "data"
    write_tape(data)
    assert hlstream(tmp_path, "rebuild", "--interval", "5s").returncode == 0
    out = tmp_path / "bars.csv"
    span = ["--from", str(T0 + 5_000), "--to", str(T0 + 20_000)]

    done = hlstream(
        tmp_path,
        "export",
        "bars",
        "--coins",
        "BTC",
        "--interval",
        "5s",
        *span,
        "--format",
        "csv",
        "--out",
        str(out),
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_text().splitlines() == [
        "coin,start_ms,open,high,low,close,volume",
        *(
            f"BTC,{T0 + i * 5_000},{100 + i}.5,{100 + i}.5,{100 + i}.5,{100 + i}.5,0.25"
            for i in (1, 2, 3)
        ),
    ]
    late = ["--from", str(T0), "--to", str(END + 60_000)]
    refused = hlstream(
        tmp_path, "export", "bars", "--coins", "BTC", "--interval", "5s", *late, "--out", str(out)
    )
    assert refused.returncode == 1 and "btc_5s_data.csv has no row for" in refused.stderr
