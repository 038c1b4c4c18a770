"""Disk full: a running writer hits its file-size limit (RLIMIT_FSIZE -> EFBIG, the same path
as ENOSPC) mid-stream. The bar must stay un-acked, no half line may reach the file, and once
space returns (the limit is lifted on the live process) the aggregator's resend is written.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import zmq

from hlstream.common.messages import Bar
from hlstream.common.timebucket import format_window
from tests.integration.test_writer_process import (
    csv_rows,
    no_ack,
    recv_ack,
    send_bar,
    start_writer,
    stop_writer,
    wait_ready,
    writer_env,
)

S5 = 5_000
T0 = 1_700_000_000_000


def row(k: int) -> str:
    return f"{format_window(T0 + k * S5)},50.0,60.0,40.0,45.5,2.5"


def test_disk_full_keeps_bar_unacked_without_half_line_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "btc_5s_data.csv"
    path.write_text(
        "Datetime,Open,High,Low,Close,Volume\n" + "".join(row(k) + "\n" for k in range(60))
    )  # bigger than writer-status.json
    env = writer_env(tmp_path, "http://127.0.0.1:9/info", HLSTREAM_INTERVALS="5s")
    proc = start_writer(env)
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        wait_ready(proc, tmp_path / "run")
        dealer.connect(f"ipc://{tmp_path / 'run' / 'writer.sock'}")
        before = path.read_bytes()
        limit = len(before) + 20  # less than one row: the append cannot fit
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        bar = Bar("BTC", "5s", T0 + 60 * S5, "50.0", "60.0", "40.0", "45.5", "2.5", 7, True, "ws")
        for attempt in range(3):  # the aggregator resends an un-acked bar
            send_bar(dealer, bar, attempt + 1)
            assert no_ack(dealer, 700), "a bar that is not on disk must not be acked"
            assert path.read_bytes() == before, "no half line after a failed append"
        assert proc.poll() is None, "the writer survives a full disk"
        resource.prlimit(
            proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        send_bar(dealer, bar, 4)
        assert recv_ack(dealer)["start_ms"] == bar.start_ms
        time.sleep(0.2)
    finally:
        dealer.close()
        context.term()
        code, err = stop_writer(proc)
    assert code == 0, err
    assert err.count("event=csv_write_failed") >= 3
    # A write cut short at the limit is reported as ENOSPC, one refused outright as EFBIG.
    assert "errno=EFBIG" in err or "errno=ENOSPC" in err
    assert "restored=True" in err
    assert csv_rows(path) == [row(k) for k in range(61)]
