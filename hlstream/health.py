"""Pipeline health from supervisord's process table and the stages' status files (pure).

`build_report` turns plain values (process infos, decoded `*-status.json` maps, settings,
`now_ms`) into one JSON-ready report; `hlstream status`, `hlstream status --json` and the
Prometheus exporter all read that same report. The pipeline is unhealthy when:
- supervisord is not running, or a stage is not RUNNING;
- a stage's status file is missing or older than `STATUS_STALE_MS`;
- a CSV file's last row ended more than 2 intervals + grace before now (or, with no row
  yet, the writer has been up that long), or the writer refused a file.
Counters come from the status files, so they count since that stage last started.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hlstream import STAGES
from hlstream.common.config import Settings
from hlstream.common.errors import ConfigError
from hlstream.common.status import StageStatus
from hlstream.common.timebucket import format_window, parse_interval

STATUS_STALE_MS = 5_000
LAG_INTERVALS = 2


def _age_s(now_ms: int, ts_ms: object) -> float | None:
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool):
        return None
    return round(max(0, now_ms - ts_ms) / 1000, 3)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stage(
    name: str,
    supervisord_running: bool,
    info: Mapping[str, Any] | None,
    status: StageStatus | None,
    now_ms: int,
) -> tuple[dict[str, Any], list[str]]:
    problems = []
    state = str(info.get("statename", "UNKNOWN")) if info else "UNKNOWN"
    if not supervisord_running:
        state = "DOWN"  # reported once as "supervisord is not running"
    uptime_s = None
    if info and state == "RUNNING" and _int(info.get("start")) and _int(info.get("now")):
        uptime_s = max(0, int(info["now"]) - int(info["start"]))
    if state not in ("RUNNING", "DOWN"):
        problems.append(f"stage {name} is {state}")
    status_age_s = None if status is None else _age_s(now_ms, status.ts_ms)
    if status_age_s is None:
        problems.append(f"stage {name} has no status file")
    elif status_age_s * 1000 > STATUS_STALE_MS:
        problems.append(f"stage {name} status is {status_age_s:.1f}s old")
    entry = {
        "state": state,
        "pid": (info or {}).get("pid") or None,
        "uptime_s": uptime_s,
        "status_age_s": status_age_s,
        "ok": not problems and state == "RUNNING",
    }
    return entry, problems


def _files(
    writer: StageStatus | None, settings: Settings, now_ms: int, writer_uptime_s: int | None
) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    problems = []
    grace_ms = int(settings.grace_seconds * 1000)
    files = {} if writer is None else writer.files
    for name, info in sorted(files.items()):
        interval = info.interval
        try:
            interval_ms = parse_interval(interval)
        except ConfigError:
            continue
        limit_ms = LAG_INTERVALS * interval_ms + grace_ms
        last = info.last_start_ms
        if last is None:
            behind_ms = None
            lagging = writer_uptime_s is not None and writer_uptime_s * 1000 > limit_ms
        else:
            behind_ms = max(0, now_ms - (last + interval_ms))
            lagging = behind_ms > limit_ms
        if lagging:
            what = "has no rows" if behind_ms is None else f"is {behind_ms / 1000:.0f}s behind"
            problems.append(f"file {name} {what} (limit {limit_ms / 1000:.0f}s)")
        out[name] = {
            "coin": info.coin,
            "interval": interval,
            "last_start_ms": last,
            "last_datetime": None if last is None else format_window(last),
            "behind_s": None if behind_ms is None else round(behind_ms / 1000, 3),
            "limit_s": limit_ms / 1000,
            "lagging": lagging,
        }
    for key, error in ({} if writer is None else writer.refused).items():
        problems.append(f"writer refused {key}: {error}")
    return out, problems


def _counters(statuses: Mapping[str, StageStatus | None]) -> dict[str, Any]:
    def count(stage: str, name: str) -> int | None:
        status = statuses.get(stage)
        return None if status is None else status.counter(name)

    return {
        "reconnects": count("ingest", "reconnects"),
        "gaps": count("ingest", "gaps"),
        "duplicate_trades": count("ingest", "duplicates"),
        "lost_messages": count("aggregator", "lost_messages"),
        "late_trades": count("aggregator", "late_trades"),
        "pending_bars": count("aggregator", "pending_bars"),
        "partial_bars": count("writer", "partial_written"),
        "holes_repaired": count("writer", "holes_repaired"),
        "rest_errors": count("writer", "rest_errors"),
        "write_errors": count("writer", "write_errors"),
        "ingest_behind": count("ingest", "behind"),
        "malformed": {stage: count(stage, "malformed") for stage in STAGES},
    }


def build_report(
    settings: Settings,
    supervisord_running: bool,
    processes: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, StageStatus | None],
    now_ms: int,
    inexact: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The health report (JSON-ready) for one run dir; `inexact`: rows not exact per file."""
    problems: list[str] = []
    if not supervisord_running:
        problems.append(f"supervisord is not running (run dir {settings.run_dir})")
    stages: dict[str, Any] = {}
    for name in STAGES:
        entry, found = _stage(
            name, supervisord_running, processes.get(name), statuses.get(name), now_ms
        )
        stages[name] = entry
        problems.extend(found)
    ingest = statuses.get("ingest")
    feed = None if ingest is None else ingest.feed
    last_trades = {} if feed is None else feed.last_trade_ms
    coins: dict[str, Any] = {}
    # The coins ingest reports (the running config), else this command's configured coins.
    for coin in list(last_trades) or list(settings.coins):
        ts_ms = last_trades.get(coin)
        coins[coin] = {"last_trade_ms": ts_ms, "last_trade_age_s": _age_s(now_ms, ts_ms)}
    files, file_problems = _files(
        statuses.get("writer"), settings, now_ms, stages["writer"]["uptime_s"]
    )
    problems.extend(file_problems)
    for name, info in files.items():
        info["inexact_rows"] = (inexact or {}).get(name, 0)
    return {
        "healthy": not problems,
        "problems": problems,
        "now_ms": now_ms,
        "run_dir": str(settings.run_dir),
        "data_dir": str(settings.data_dir),
        "supervisord": supervisord_running,
        "connected": None if feed is None else feed.connected,
        "backlog_bytes": None if feed is None else feed.backlog_bytes,
        "stages": stages,
        "coins": coins,
        "files": files,
        "counters": _counters(statuses),
        "inexact_rows": sum((inexact or {}).values()),
    }


def format_duration(seconds: float | None) -> str:
    """`0.4s`, `12s`, `5m02s`, `3h07m`, `2d04h`; `-` for None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _show(value: object) -> str:
    return "-" if value is None else str(value)


def format_report(report: Mapping[str, Any]) -> str:
    """The human table printed by `hlstream status`."""
    verdict = "HEALTHY" if report["healthy"] else f"UNHEALTHY ({len(report['problems'])} problems)"
    lines = [f"hlstream {verdict}  run dir {report['run_dir']}  data dir {report['data_dir']}", ""]
    lines.append(f"{'STAGE':<12}{'STATE':<10}{'PID':>8}{'UPTIME':>10}{'STATUS AGE':>12}")
    for name, stage in report["stages"].items():
        lines.append(
            f"{name:<12}{stage['state']:<10}{_show(stage['pid']):>8}"
            f"{format_duration(stage['uptime_s']):>10}{format_duration(stage['status_age_s']):>12}"
        )
    connected = {True: "yes", False: "NO", None: "-"}[report["connected"]]
    backlog = report.get("backlog_bytes")
    unread = "" if not backlog else f", {backlog} bytes not yet handled"
    lines += [
        "",
        f"{'COIN':<16}{'LAST TRADE AGE':>16}    (ingest connected: {connected}{unread})",
    ]
    for coin, info in report["coins"].items():
        lines.append(f"{coin:<16}{format_duration(info['last_trade_age_s']):>16}")
    if report["files"]:
        width = max(24, *(len(name) + 2 for name in report["files"]))
        lines += ["", f"{'FILE':<{width}}{'LAST BAR (UTC)':<22}{'BEHIND':>10}{'LIMIT':>8}"]
        for name, info in report["files"].items():
            flag = "  LAGGING" if info["lagging"] else ""
            if info.get("inexact_rows"):
                flag += f"  {info['inexact_rows']} NOT EXACT"
            lines.append(
                f"{name:<{width}}{_show(info['last_datetime']):<22}"
                f"{format_duration(info['behind_s']):>10}{format_duration(info['limit_s']):>8}{flag}"
            )
    counters = dict(report["counters"])
    malformed = counters.pop("malformed")
    pairs = [f"{key}={_show(value)}" for key, value in counters.items()]
    pairs.append("malformed=" + "/".join(_show(malformed[name]) for name in STAGES))
    lines += ["", "counters (since each stage started): " + " ".join(pairs)]
    if report.get("inexact_rows"):
        lines += [
            "",
            f"{report['inexact_rows']} rows are not exact (partial or carried blind); "
            "`hlstream verify` lists them, `hlstream rebuild` repairs what the tape covers",
        ]
    if report["problems"]:
        lines += ["", "problems:"] + [f"  - {problem}" for problem in report["problems"]]
    return "\n".join(lines)
