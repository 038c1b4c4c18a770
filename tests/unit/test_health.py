"""common/health.py: what makes `hlstream status` unhealthy, and the report's figures."""

from __future__ import annotations

from pathlib import Path

from hlstream.common.config import Settings, validate
from hlstream.common.status import FeedStatus, FileStatus, StageStatus
from hlstream.health import build_report, format_duration, format_report

NOW = 1_700_000_000_000  # aligned to 5 s and 1 m
SETTINGS = validate(
    Settings(
        coins=("BTC", "ETH"),
        intervals=("5s", "1m"),
        run_dir=Path("/tmp/r"),
        data_dir=Path("/tmp/d"),
    )
)


def processes(**states: str) -> dict[str, dict[str, object]]:
    out = {}
    for name in ("ingest", "aggregator", "writer"):
        out[name] = {
            "name": name,
            "statename": states.get(name, "RUNNING"),
            "pid": 42,
            "start": NOW // 1000 - 600,
            "now": NOW // 1000,
        }
    return out


def statuses(age_ms: int = 500, btc_5s_last: int | None = NOW - 10_000) -> dict[str, StageStatus]:
    ts_ms = NOW - age_ms
    feed = FeedStatus(
        connected=True,
        links=1,
        links_up=1,
        delisted=(),
        msgs_per_s=1.0,
        last_trade_ms={"BTC": NOW - 1_500},
        covered_ms=NOW - 1_000,
        backlog_bytes=2_500_000,
    )
    return {
        "ingest": StageStatus(
            "ingest",
            ts_ms,
            1,
            "s",
            {"reconnects": 2, "gaps": 1, "malformed": 3, "behind": 7},
            feed=feed,
        ),
        "aggregator": StageStatus(
            "aggregator", ts_ms, 2, "s", {"late_trades": 4, "lost_messages": 0, "malformed": 0}
        ),
        "writer": StageStatus(
            "writer",
            ts_ms,
            3,
            "s",
            {"partial_written": 5, "malformed": 1},
            files={
                "btc_5s_data.csv": FileStatus("BTC", "5s", btc_5s_last),
                "btc_1m_data.csv": FileStatus("BTC", "1m", NOW - 120_000),
            },
        ),
    }


def test_all_running_and_fresh_is_healthy() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(), NOW)
    assert report["healthy"], report["problems"]


def test_supervisord_down_is_unhealthy() -> None:
    report = build_report(SETTINGS, False, {}, statuses(), NOW)
    assert not report["healthy"]
    assert any("supervisord" in problem for problem in report["problems"])
    assert report["stages"]["writer"]["state"] == "DOWN"


def test_stopped_stage_is_unhealthy() -> None:
    report = build_report(SETTINGS, True, processes(writer="STOPPED"), statuses(), NOW)
    assert not report["healthy"]
    assert report["stages"]["writer"] == {
        **report["stages"]["writer"],
        "state": "STOPPED",
        "ok": False,
    }
    assert report["problems"] == ["stage writer is STOPPED"]


def test_stale_status_file_is_unhealthy() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(age_ms=6_000), NOW)
    assert not report["healthy"]
    assert len(report["problems"]) == 3


def test_file_behind_two_intervals_plus_grace_is_lagging() -> None:
    # 5s file: last row started 20 s ago -> ended 15 s ago > 2*5 s + 2 s grace.
    report = build_report(SETTINGS, True, processes(), statuses(btc_5s_last=NOW - 20_000), NOW)
    assert report["files"]["btc_5s_data.csv"]["lagging"]
    assert report["files"]["btc_5s_data.csv"]["behind_s"] == 15.0
    assert not report["files"]["btc_1m_data.csv"]["lagging"]
    assert not report["healthy"]


def test_file_without_rows_lags_once_the_writer_has_been_up_long_enough() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(btc_5s_last=None), NOW)
    assert report["files"]["btc_5s_data.csv"]["lagging"]  # writer up 600 s, limit 12 s


def test_counters_and_trade_ages_come_from_the_status_files() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(), NOW)
    assert report["coins"]["BTC"]["last_trade_age_s"] == 1.5
    assert list(report["coins"]) == ["BTC"]  # the coins ingest reports, not this config's
    counters = report["counters"]
    assert (
        counters["reconnects"],
        counters["gaps"],
        counters["late_trades"],
        counters["partial_bars"],
    ) == (2, 1, 4, 5)
    assert counters["malformed"] == {"ingest": 3, "aggregator": 0, "writer": 1}
    assert counters["ingest_behind"] == 7 and report["backlog_bytes"] == 2_500_000
    assert "2500000 bytes not yet handled" in format_report(report)


def test_coins_come_from_the_config_before_ingest_reports_any() -> None:
    report = build_report(SETTINGS, True, processes(), {}, NOW)
    assert report["coins"] == {
        "BTC": {"last_trade_ms": None, "last_trade_age_s": None},
        "ETH": {"last_trade_ms": None, "last_trade_age_s": None},
    }


def test_human_table_names_every_stage_file_and_problem() -> None:
    text = format_report(build_report(SETTINGS, True, processes(writer="FATAL"), statuses(), NOW))
    for needle in (
        "UNHEALTHY",
        "ingest",
        "writer",
        "FATAL",
        "btc_5s_data.csv",
        "reconnects=2",
        "stage writer is FATAL",
    ):
        assert needle in text


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 0.42, 12, 302, 11_220, 187_200)] == [
        "-",
        "0.4s",
        "12s",
        "5m02s",
        "3h07m",
        "2d04h",
    ]
