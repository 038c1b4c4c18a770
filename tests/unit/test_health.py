"""hlstream/health.py: what makes `hlstream status` unhealthy, and the report's figures."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hlstream.common.config import Settings, validate
from hlstream.common.errors import ConfigError
from hlstream.common.status import (
    AuditScore,
    FeedStatus,
    FileStatus,
    RestStatus,
    StageStatus,
    TradeActivity,
)
from hlstream.health import CoinHealth, ProcessInfo, Report, build_report, total_score
from hlstream.health_text import AUDIT_FILES_SHOWN, format_duration, format_report

DOCS = Path(__file__).resolve().parents[2] / "docs" / "status.md"

NOW = 1_700_000_000_000  # aligned to 5 s and 1 m
SETTINGS = validate(
    Settings(
        coins=("BTC", "ETH"),
        intervals=("5s", "1m"),
        run_dir=Path("/tmp/r"),
        data_dir=Path("/tmp/d"),
    )
)


def processes(**states: str) -> dict[str, ProcessInfo]:
    return {
        name: ProcessInfo(name, states.get(name, "RUNNING"), 42, NOW // 1000 - 600, NOW // 1000)
        for name in ("ingest", "aggregator", "writer")
    }


SCORE_5S = AuditScore(audited=24, matched=12, mismatched=12, pending=36, unauditable=0)
SCORE_1M = AuditScore(audited=3, matched=3, mismatched=0, pending=2, unauditable=1)


def statuses(
    age_ms: int = 500,
    btc_5s_last: int | None = NOW - 10_000,
    rest: RestStatus | None = None,
    scores: tuple[AuditScore | None, AuditScore | None] = (SCORE_5S, SCORE_1M),
    **feed_fields: Any,
) -> dict[str, StageStatus]:
    ts_ms = NOW - age_ms
    feed = FeedStatus(
        **{
            "connected": True,
            "links": 1,
            "links_up": 1,
            "delisted": (),
            "msgs_per_s": 1.0,
            "last_trade_ms": {"BTC": NOW - 1_500},
            "covered_ms": NOW - 1_000,
            "backlog_bytes": 2_500_000,
            "connected_since_ms": NOW - 600_000,
            **feed_fields,
        }
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
                "btc_5s_data.csv": FileStatus("BTC", "5s", btc_5s_last, scores[0]),
                "btc_1m_data.csv": FileStatus("BTC", "1m", NOW - 120_000, scores[1]),
            },
            rest=rest or RestStatus(last_ok_ms=NOW - 30_000),
        ),
    }


def test_all_running_and_fresh_is_healthy() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(), NOW)
    assert report.healthy, report.problems


def test_supervisord_down_is_unhealthy() -> None:
    report = build_report(SETTINGS, False, {}, statuses(), NOW)
    assert not report.healthy
    assert any("supervisord" in problem for problem in report.problems)
    assert report.stages["writer"].state == "DOWN"


def test_stopped_stage_is_unhealthy() -> None:
    report = build_report(SETTINGS, True, processes(writer="STOPPED"), statuses(), NOW)
    assert not report.healthy
    assert (report.stages["writer"].state, report.stages["writer"].ok) == ("STOPPED", False)
    assert report.problems == ["stage writer is STOPPED"]


def test_stale_status_file_is_unhealthy() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(age_ms=6_000), NOW)
    assert not report.healthy
    assert len(report.problems) == 3


def test_file_behind_two_intervals_plus_grace_is_lagging() -> None:
    # 5s file: last row started 20 s ago -> ended 15 s ago > 2*5 s + 2 s grace.
    report = build_report(SETTINGS, True, processes(), statuses(btc_5s_last=NOW - 20_000), NOW)
    assert report.files["btc_5s_data.csv"].lagging
    assert report.files["btc_5s_data.csv"].behind_s == 15.0
    assert not report.files["btc_1m_data.csv"].lagging
    assert not report.healthy


def test_file_without_rows_lags_once_the_writer_has_been_up_long_enough() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(btc_5s_last=None), NOW)
    assert report.files["btc_5s_data.csv"].lagging  # writer up 600 s, limit 12 s


def test_counters_and_trade_ages_come_from_the_status_files() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(), NOW)
    assert report.coins["BTC"].last_trade_age_s == 1.5
    assert list(report.coins) == ["BTC"]  # the coins ingest reports, not this config's
    counters = report.counters
    assert (
        counters.reconnects,
        counters.gaps,
        counters.late_trades,
        counters.partial_bars,
    ) == (2, 1, 4, 5)
    assert counters.malformed == {"ingest": 3, "aggregator": 0, "writer": 1}
    assert counters.ingest_behind == 7 and report.backlog_bytes == 2_500_000
    assert "2500000 bytes not yet handled" in format_report(report)


def test_coins_come_from_the_config_before_ingest_reports_any() -> None:
    report = build_report(SETTINGS, True, processes(), {}, NOW)
    unknown = CoinHealth(last_trade_ms=None, last_trade_age_s=None, no_trade_limit_s=None)
    assert report.coins == {"BTC": unknown, "ETH": unknown}


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


def test_the_audit_score_is_summed_over_the_files_that_have_one() -> None:
    assert total_score([None, None]) is None
    assert total_score([SCORE_5S, None, SCORE_1M]) == AuditScore(27, 15, 12, 38, 1)


def test_status_shows_each_files_audit_score_and_the_total() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(), NOW)
    assert report.files["btc_5s_data.csv"].audit == SCORE_5S
    assert report.audit == AuditScore(27, 15, 12, 38, 1)
    as_json = msgspec.to_builtins(report)
    assert as_json["files"]["btc_1m_data.csv"]["audit"] == {
        "audited": 3,
        "matched": 3,
        "mismatched": 0,
        "pending": 2,
        "unauditable": 1,
    }
    lines = format_report(report).splitlines()
    assert not [line for line in lines if "rows_audited=" in line], "shown per file, not twice"
    header = next(i for i, line in enumerate(lines) if line.startswith("AUDIT"))
    assert lines[header].split()[-5:] == [
        "AUDITED",
        "MATCHED",
        "MISMATCHED",
        "PENDING",
        "UNAUDITABLE",
    ]
    rows = {line.split()[0]: line.split()[-5:] for line in lines[header + 1 : header + 4]}
    assert rows == {
        "btc_5s_data.csv": ["24", "12", "12", "36", "0"],
        "btc_1m_data.csv": ["3", "3", "0", "2", "1"],
        "all": ["27", "15", "12", "38", "1"],
    }


def test_status_has_no_audit_section_when_the_audit_is_off() -> None:
    report = build_report(SETTINGS, True, processes(), statuses(scores=(None, None)), NOW)
    assert report.audit is None and report.files["btc_1m_data.csv"].audit is None
    assert "AUDIT" not in format_report(report)


def test_with_many_files_only_those_with_findings_are_listed() -> None:
    quiet = AuditScore(audited=5, matched=5, pending=1)
    files = {
        f"c{k}_1m_data.csv": FileStatus(f"C{k}", "1m", NOW - 120_000, quiet) for k in range(40)
    }
    files["bad_1m_data.csv"] = FileStatus("BAD", "1m", NOW - 120_000, AuditScore(2, 1, 1, 0, 0))
    base = statuses()
    writer = msgspec.structs.replace(base["writer"], files=files)
    report = build_report(SETTINGS, True, processes(), {**base, "writer": writer}, NOW)
    text = format_report(report)
    assert len(files) > AUDIT_FILES_SHOWN
    assert "bad_1m_data.csv" in text.split("AUDIT", 1)[1]
    assert "c0_1m_data.csv" not in text.split("AUDIT", 1)[1]
    assert "40 more files, none mismatched" in text
    assert "all 41 files" in text


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 0.42, 12, 302, 11_220, 187_200)] == [
        "-",
        "0.4s",
        "12s",
        "5m02s",
        "3h07m",
        "2d04h",
    ]


# ---- the feed and REST causes ---------------------------------------------------------------

LIQUID = TradeActivity(times=901, span_ms=900_000)  # a trade time every second
THIN = TradeActivity(times=21, span_ms=20 * 60_000)  # one a minute: limit 20 minutes
RARE = TradeActivity(times=5, span_ms=900_000)  # too few to judge


def causes(report: Report) -> list[tuple[str, str]]:
    return [(cause.code, cause.message) for cause in report.causes]


def offline(**fields: Any) -> dict[str, StageStatus]:
    down = {"connected": False, "links_up": 0, "connected_since_ms": None}
    return statuses(**{**down, "disconnected_since_ms": NOW - 95_000, **fields})


def test_ingest_not_connected_past_the_limit_is_unhealthy_and_named() -> None:
    report = build_report(SETTINGS, True, processes(), offline(), NOW)

    assert not report.healthy
    assert causes(report) == [("ingest_disconnected", "ingest not connected for 95 s (limit 60 s)")]
    assert report.disconnected_s == 95.0
    text = format_report(report)
    assert "UNHEALTHY: ingest not connected for 95 s (limit 60 s)" in text.splitlines()
    assert "ingest connected: NO for 1m35s" in text


def test_ingest_not_connected_within_the_limit_is_still_healthy() -> None:
    feed = offline(disconnected_since_ms=NOW - 59_000)
    report = build_report(SETTINGS, True, processes(), feed, NOW)
    assert report.healthy, report.problems


def test_the_disconnected_limit_is_the_setting() -> None:
    settings = dataclasses.replace(SETTINGS, health_disconnected_seconds=2.0)
    feed = offline(disconnected_since_ms=NOW - 3_000, links=2)
    report = build_report(settings, True, processes(), feed, NOW)
    assert causes(report) == [
        ("ingest_disconnected", "ingest not connected for 3.0 s (limit 2.0 s; 0 of 2 links up)")
    ]


def test_no_trade_on_a_coin_that_trades_past_the_limit_is_unhealthy_and_named() -> None:
    feed = statuses(last_trade_ms={"BTC": NOW - 130_000}, activity={"BTC": LIQUID})
    report = build_report(SETTINGS, True, processes(), feed, NOW)

    assert causes(report) == [("no_trade", "no trade on BTC for 130 s (limit 120 s)")]
    assert report.coins["BTC"].no_trade_limit_s == 120.0
    assert "UNHEALTHY: no trade on BTC for 130 s (limit 120 s)" in format_report(report)


def test_a_coin_that_trades_within_the_limit_is_healthy() -> None:
    feed = statuses(last_trade_ms={"BTC": NOW - 110_000}, activity={"BTC": LIQUID})
    assert build_report(SETTINGS, True, processes(), feed, NOW).healthy


def test_a_coin_that_trades_too_rarely_to_judge_is_never_flagged() -> None:
    feed = statuses(last_trade_ms={"BTC": NOW - 6 * 3_600_000}, activity={"BTC": RARE})
    report = build_report(SETTINGS, True, processes(), feed, NOW)
    assert report.healthy, report.problems
    assert report.coins["BTC"].no_trade_limit_s is None


def test_a_thin_coin_gets_twenty_of_its_own_mean_gaps() -> None:
    since = NOW - 3_600_000
    quiet = statuses(
        last_trade_ms={"BTC": NOW - 19 * 60_000}, activity={"BTC": THIN}, connected_since_ms=since
    )
    silent = statuses(
        last_trade_ms={"BTC": NOW - 21 * 60_000}, activity={"BTC": THIN}, connected_since_ms=since
    )

    assert build_report(SETTINGS, True, processes(), quiet, NOW).healthy
    assert causes(build_report(SETTINGS, True, processes(), silent, NOW)) == [
        ("no_trade", "no trade on BTC for 1260 s (limit 1200 s, 20x its mean gap)")
    ]


def test_silence_counts_from_the_connection_start_after_an_outage() -> None:
    old_trade = {"BTC": NOW - 3_600_000}
    fresh = statuses(
        last_trade_ms=old_trade, activity={"BTC": LIQUID}, connected_since_ms=NOW - 60_000
    )
    stuck = statuses(
        last_trade_ms=old_trade, activity={"BTC": LIQUID}, connected_since_ms=NOW - 130_000
    )

    assert build_report(SETTINGS, True, processes(), fresh, NOW).healthy
    assert causes(build_report(SETTINGS, True, processes(), stuck, NOW)) == [
        ("no_trade", "no trade on BTC for 130 s (limit 120 s)")
    ]


def test_no_trade_is_not_judged_while_disconnected_or_for_a_delisted_coin() -> None:
    old = {"BTC": NOW - 3_600_000}
    down = offline(last_trade_ms=old, activity={"BTC": LIQUID})
    delisted = statuses(last_trade_ms=old, activity={"BTC": LIQUID}, delisted=("BTC",))

    assert [code for code, _ in causes(build_report(SETTINGS, True, processes(), down, NOW))] == [
        "ingest_disconnected"
    ]
    assert build_report(SETTINGS, True, processes(), delisted, NOW).healthy


def test_rest_failing_past_the_limit_is_unhealthy_and_named() -> None:
    rest = RestStatus(
        failing_since_ms=NOW - 70_000,
        failures=7,
        last_error="http://x/info unreachable: ConnectionError",
        last_ok_ms=None,
    )
    report = build_report(SETTINGS, True, processes(), statuses(rest=rest), NOW)

    assert causes(report) == [
        (
            "rest_failing",
            "writer REST failing for 70 s (limit 60 s; 7 failed requests, none succeeded "
            "since; last: http://x/info unreachable: ConnectionError)",
        )
    ]
    assert report.rest["writer"].failing_s == 70.0


def test_rest_failing_within_the_limit_or_recovered_is_healthy() -> None:
    recent = RestStatus(failing_since_ms=NOW - 50_000, failures=2, last_error="HTTP 500")
    recovered = RestStatus(last_ok_ms=NOW - 1_000)
    for rest in (recent, recovered):
        report = build_report(SETTINGS, True, processes(), statuses(rest=rest), NOW)
        assert report.healthy, report.problems
    shown = format_report(build_report(SETTINGS, True, processes(), statuses(rest=recent), NOW))
    assert "writer REST failing for 50s: 2 failed requests, last: HTTP 500" in shown


def test_every_cause_gets_its_own_line_in_the_table() -> None:
    rest = RestStatus(failing_since_ms=NOW - 70_000, failures=7, last_error="down")
    report = build_report(SETTINGS, True, processes(), offline(rest=rest), NOW)
    lines = format_report(report).splitlines()
    assert lines[0].startswith("hlstream UNHEALTHY (2 problems)")
    assert lines[1] == "UNHEALTHY: ingest not connected for 95 s (limit 60 s)"
    assert lines[2].startswith("UNHEALTHY: writer REST failing for 70 s (limit 60 s; 7 failed")


def test_one_problem_is_counted_in_the_singular() -> None:
    report = build_report(SETTINGS, True, processes(), offline(), NOW)

    assert format_report(report).startswith("hlstream UNHEALTHY (1 problem)  ")


@pytest.mark.parametrize(
    "name",
    ["health_disconnected_seconds", "health_no_trade_seconds", "health_rest_failing_seconds"],
)
def test_health_thresholds_are_validated(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        validate(dataclasses.replace(SETTINGS, **{name: 0.0}))


# ---- every field of `hlstream status --json` is documented -------------------------------

# Maps keyed by a stage, coin or file name: their keys are one placeholder in docs/status.md.
_NAMED_KEYS = {"stages": "STAGE", "coins": "COIN", "files": "FILE", "rest": "STAGE"}


def _field_paths(value: Any, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    if isinstance(value, dict):
        placeholder = _NAMED_KEYS.get(prefix) or (
            "STAGE" if prefix == "counters.malformed" else None
        )
        for key, item in value.items():
            path = f"{prefix}.{placeholder or key}".lstrip(".")
            paths.add(path)
            paths |= _field_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= _field_paths(item, prefix + "[]")
    return paths


def _documented_fields() -> set[str]:
    """The first column of the field table: every row after the heading that opens it."""
    table = DOCS.read_text().split("## Every field of `hlstream status --json`", 1)[1]
    return set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))


def test_every_status_json_field_is_documented_and_every_documented_one_exists() -> None:
    rest = RestStatus(failing_since_ms=NOW - 70_000, failures=7, last_error="down")
    report = build_report(
        SETTINGS,
        True,
        processes(),
        statuses(rest=rest, activity={"BTC": LIQUID}),
        NOW,
        inexact={"btc_5s_data.csv": 1},
    )
    report_offline = build_report(SETTINGS, False, {}, offline(), NOW)
    fields = _field_paths(msgspec.to_builtins(report)) | _field_paths(
        msgspec.to_builtins(report_offline)
    )

    documented = _documented_fields()
    assert sorted(fields - documented) == [], "fields missing from docs/status.md"
    assert sorted(documented - fields) == [], "docs/status.md documents fields that do not exist"


def test_every_cause_code_is_documented() -> None:
    source = (Path(__file__).resolve().parents[2] / "hlstream" / "health.py").read_text()
    codes = set(re.findall(r'Problem\(\s*"(\w+)"', source))
    table = DOCS.read_text().split("| code | when |", 1)[1].split("\n\n", 1)[0]
    assert codes == set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE))


def test_the_exporter_names_each_cause() -> None:
    from hlstream.metrics_io import families

    rest = RestStatus(failing_since_ms=NOW - 70_000, failures=7, last_error="down")
    report = build_report(SETTINGS, True, processes(), offline(rest=rest), NOW)

    samples = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in families(report)
        for sample in family.samples
    }
    assert samples[("hlstream_healthy", ())] == 0.0
    assert samples[("hlstream_unhealthy_cause", ("ingest_disconnected",))] == 1.0
    assert samples[("hlstream_unhealthy_cause", ("rest_failing",))] == 1.0
    assert samples[("hlstream_ingest_disconnected_seconds", ())] == 95.0
    assert samples[("hlstream_rest_failing_seconds", ("writer",))] == 70.0
