"""Writer against the fake exchange's REST side: 429 with Retry-After, 5xx, the ~5000-candle
reach, carry-forward of omitted windows, idempotent backfill, and a partial bar whose
candle the exchange has not finished yet. In-process (a real HTTP round trip, no sockets to
the aggregator), so these run in a few seconds.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hlstream.common.config import Settings, prepare_dirs, validate
from hlstream.common.csvrow import HEADER_LINE, format_row
from hlstream.common.errors import TransientError
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.services.writer import core
from hlstream.services.writer.store import Store
from hlstream.sim.exchange import FakeExchange
from hlstream.sim.market import truth_rows
from tests.support.exchange import exchange_fixture
from tests.support.pipeline import assert_contiguous, read_rows

M = 60_000


# One trade every ~90 s on average: many 1m windows are empty and omitted by REST.
exchange = exchange_fixture(
    coins=["BTC"],
    spot=[],
    seed=5,
    history_hours=2.0,
    history_gap_s=0,
    history_every_s=90.0,
    paused=True,
)


def make_writer(tmp_path: Path, info_url: str, hours: float = 1.5) -> Store:
    settings = validate(
        Settings(
            coins=("BTC",),
            intervals=("1m",),
            data_dir=tmp_path / "data",
            run_dir=tmp_path / "run",
            info_url=info_url,
            backfill_hours=hours,
            backoff_base_seconds=0.05,
            backoff_cap_seconds=0.2,
        )
    )
    prepare_dirs(settings)
    writer = Store(settings, StopFlag(), EventLog("writer"))
    writer.open_files()
    return writer


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if getattr(r, "event", "") == name]


def test_backfill_retries_429_after_retry_after_then_equals_truth_and_is_idempotent(
    exchange: FakeExchange, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer(tmp_path, exchange.info_url)
    frozen_ms = writer.now_ms()  # both backfills see the same "now": a minute that ends
    writer.now_ms = lambda: frozen_ms  # between them would rightly add a row
    exchange.fail_rest(429, 2, retry_after=0.4)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="hlstream"):
        writer.backfill()
    assert time.monotonic() - started >= 0.8, "Retry-After 0.4 s honoured twice"
    retries = events(caplog, "rest_retry")
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r["delay_ms"] >= 400 and r["retry_after_s"] == 0.4 for r in retries)
    assert len(exchange.rest_requests()) == 3
    # Each attempt spent weight (20 + rows/60) from the one shared budget, retries included.
    assert writer.rest.budget.tokens < 1200 - 2 * core.candle_weight(90)

    path = writer.files[("BTC", "1m")].path
    rows = read_rows(path)
    assert len(rows) >= 80
    assert_contiguous(rows, M, "btc_1m")
    truth = truth_rows(exchange.trades("BTC"), M, rows[0][0], rows[-1][0] + M)
    assert rows == truth
    assert sum(1 for r in rows if r[5] == "0.0") >= 10, "omitted windows carried forward"
    first = path.read_bytes()
    writer.backfill()  # twice = once
    assert path.read_bytes() == first


def test_backfill_retries_5xx_and_gives_up_after_bounded_attempts(
    exchange: FakeExchange, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = make_writer(tmp_path, exchange.info_url)
    exchange.fail_rest(503, 10)
    with caplog.at_level(logging.INFO, logger="hlstream"):
        writer.backfill()
    assert len(exchange.rest_requests()) == 4  # BACKFILL_ATTEMPTS, then logged and left
    assert events(caplog, "backfill_failed")
    assert not writer.files[("BTC", "1m")].path.exists(), "no row, so no file yet"
    delays = [r["delay_ms"] for r in events(caplog, "rest_retry")]
    assert len(delays) == 3 and all(0 < d <= 200 for d in delays)  # capped backoff
    exchange.fail_rest(503, 1)  # one more blip, then a later backfill recovers
    writer.backfill()
    assert len(read_rows(writer.files[("BTC", "1m")].path)) >= 80


def test_backfill_beyond_candle_reach_is_logged_and_carried_forward(
    exchange: FakeExchange, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time() * 1000)
    old = now - now % M - 6_000 * M  # older than the 5000 most recent 1m candles
    data = tmp_path / "data"
    data.mkdir()
    (data / "btc_1m_data.csv").write_text(
        HEADER_LINE
        + format_row(Bar("BTC", "1m", old, "5.0", "5.0", "5.0", "5.0", "1.0", 1, True, "ws"))
    )
    writer = make_writer(tmp_path, exchange.info_url, hours=1.0)
    with caplog.at_level(logging.INFO, logger="hlstream"):
        writer.backfill()
    (warning,) = events(caplog, "backfill_beyond_reach")
    reach = core.rest_reach_start(now, M)
    assert warning["windows"] in {(reach - old - M) // M, (reach - old - M) // M + 1}
    (request,) = exchange.rest_requests()
    assert request["req"]["startTime"] >= reach  # never asks beyond the reach
    rows = read_rows(writer.files[("BTC", "1m")].path)
    assert_contiguous(rows, M, "btc_1m")
    assert all(r[1:] == ("5.0", "5.0", "5.0", "5.0", "0.0") for r in rows[1:1000])


class SlowCandle:
    """An /info stand-in whose candle for the window lacks the last trade on the first call."""

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.calls = 0

    def post(self, body: dict[str, Any]) -> Any:
        self.calls += 1
        n, v, h = (2, "2.0", "11.0") if self.calls == 1 else (3, "3.5", "12.0")
        return [
            {
                "t": self.start_ms,
                "T": self.start_ms + M - 1,
                "s": "BTC",
                "i": "1m",
                "o": "10.0",
                "h": h,
                "l": "9.0",
                "c": "10.5",
                "v": v,
                "n": n,
            }
        ]


class DownInfo:
    def post(self, body: dict[str, Any]) -> Any:
        raise TransientError("connection refused")


def _writer_with(tmp_path: Path, info: Any) -> Store:
    settings = validate(
        Settings(
            coins=("BTC",),
            intervals=("1m",),
            data_dir=tmp_path / "data",
            run_dir=tmp_path / "run",
            backfill_hours=0.0,
            backoff_base_seconds=0.01,
            backoff_cap_seconds=0.1,
        )
    )
    prepare_dirs(settings)
    writer = Store(settings, StopFlag(), EventLog("writer"), info=info)
    writer.open_files()
    return writer


def test_partial_bar_waits_for_a_candle_that_covers_it(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    start = now - now % M - 2 * M
    info = SlowCandle(start)
    writer = _writer_with(tmp_path, info)
    seen = Bar("BTC", "1m", start, "10.0", "12.0", "10.0", "12.0", "3.0", 3, False, "ws")
    assert writer.handle_bar(seen) is True
    assert info.calls == 2, "the first candle (2 trades < 3 seen) was too early"
    (row,) = read_rows(writer.files[("BTC", "1m")].path)
    assert row == (start, "10.0", "12.0", "9.0", "10.5", "3.5")
    assert writer.counters.partial_written == 0


def test_partial_bar_is_written_and_logged_when_rest_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time() * 1000)
    start = now - now % M - 2 * M
    writer = _writer_with(tmp_path, DownInfo())
    seen = Bar("BTC", "1m", start, "10.0", "12.0", "10.0", "12.0", "3.0", 3, False, "ws")
    with caplog.at_level(logging.INFO, logger="hlstream"):
        assert writer.handle_bar(seen) is True
    (row,) = read_rows(writer.files[("BTC", "1m")].path)
    assert row == (start, "10.0", "12.0", "10.0", "12.0", "3.0")
    assert writer.counters.partial_written == 1
    assert events(caplog, "partial_bar_written")[0]["reason"] == "rest_failed"
    assert Decimal(row[5]) == Decimal("3.0")
