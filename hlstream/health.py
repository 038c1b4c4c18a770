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
    status: Mapping[str, Any] | None,
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
    status_age_s = None if status is None else _age_s(now_ms, status.get("ts_ms"))
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
    writer: Mapping[str, Any], settings: Settings, now_ms: int, writer_uptime_s: int | None
) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    problems = []
    grace_ms = int(settings.grace_seconds * 1000)
    files = writer.get("files")
    for name, info in sorted((files if isinstance(files, dict) else {}).items()):
        if not isinstance(info, dict):
            continue
        interval = str(info.get("interval", ""))
        try:
            interval_ms = parse_interval(interval)
        except ConfigError:
            continue
        limit_ms = LAG_INTERVALS * interval_ms + grace_ms
        last = _int(info.get("last_start_ms"))
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
            "coin": info.get("coin"),
            "interval": interval,
            "last_start_ms": last,
            "last_datetime": None if last is None else format_window(last),
            "behind_s": None if behind_ms is None else round(behind_ms / 1000, 3),
            "limit_s": limit_ms / 1000,
            "lagging": lagging,
        }
    refused = writer.get("refused")
    for key, error in (refused if isinstance(refused, dict) else {}).items():
        problems.append(f"writer refused {key}: {error}")
    return out, problems


def _counters(statuses: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    ingest = statuses.get("ingest") or {}
    aggregator = statuses.get("aggregator") or {}
    writer = statuses.get("writer") or {}
    raw = writer.get("counters")
    wcount: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    return {
        "reconnects": _int(ingest.get("reconnects")),
        "gaps": _int(ingest.get("gaps")),
        "duplicate_trades": _int(ingest.get("duplicates")),
        "lost_messages": _int(aggregator.get("lost_messages")),
        "late_trades": _int(aggregator.get("late_trades")),
        "pending_bars": _int(aggregator.get("pending_bars")),
        "partial_bars": _int(wcount.get("partial_written")),
        "holes_repaired": _int(wcount.get("holes_repaired")),
        "rest_errors": _int(wcount.get("rest_errors")),
        "write_errors": _int(wcount.get("write_errors")),
        "malformed": {
            "ingest": _int(ingest.get("malformed")),
            "aggregator": _int(aggregator.get("malformed")),
            "writer": _int(wcount.get("malformed")),
        },
    }


def build_report(
    settings: Settings,
    supervisord_running: bool,
    processes: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, Mapping[str, Any] | None],
    now_ms: int,
) -> dict[str, Any]:
    """The health report (JSON-ready) for one run dir."""
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
    ingest = statuses.get("ingest") or {}
    last_trades = ingest.get("last_trade_ms")
    coins: dict[str, Any] = {}
    last_trades = last_trades if isinstance(last_trades, dict) else {}
    # The coins ingest reports (the running config), else this command's configured coins.
    for coin in list(last_trades) or list(settings.coins):
        ts_ms = _int(last_trades.get(coin))
        coins[coin] = {"last_trade_ms": ts_ms, "last_trade_age_s": _age_s(now_ms, ts_ms)}
    files, file_problems = _files(
        statuses.get("writer") or {}, settings, now_ms, stages["writer"]["uptime_s"]
    )
    problems.extend(file_problems)
    return {
        "healthy": not problems,
        "problems": problems,
        "now_ms": now_ms,
        "run_dir": str(settings.run_dir),
        "data_dir": str(settings.data_dir),
        "supervisord": supervisord_running,
        "connected": ingest.get("connected") if isinstance(ingest.get("connected"), bool) else None,
        "stages": stages,
        "coins": coins,
        "files": files,
        "counters": _counters(statuses),
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
    lines += ["", f"{'COIN':<16}{'LAST TRADE AGE':>16}    (ingest connected: {connected})"]
    for coin, info in report["coins"].items():
        lines.append(f"{coin:<16}{format_duration(info['last_trade_age_s']):>16}")
    if report["files"]:
        width = max(24, *(len(name) + 2 for name in report["files"]))
        lines += ["", f"{'FILE':<{width}}{'LAST BAR (UTC)':<22}{'BEHIND':>10}{'LIMIT':>8}"]
        for name, info in report["files"].items():
            flag = "  LAGGING" if info["lagging"] else ""
            lines.append(
                f"{name:<{width}}{_show(info['last_datetime']):<22}"
                f"{format_duration(info['behind_s']):>10}{format_duration(info['limit_s']):>8}{flag}"
            )
    counters = dict(report["counters"])
    malformed = counters.pop("malformed")
    pairs = [f"{key}={_show(value)}" for key, value in counters.items()]
    pairs.append("malformed=" + "/".join(_show(malformed[name]) for name in STAGES))
    lines += ["", "counters (since each stage started): " + " ".join(pairs)]
    if report["problems"]:
        lines += ["", "problems:"] + [f"  - {problem}" for problem in report["problems"]]
    return "\n".join(lines)
