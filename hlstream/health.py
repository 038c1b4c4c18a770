"""Pipeline health from supervisord's process table and the stages' status files (pure).

`build_report` turns plain values (process infos, decoded `*-status.json` maps, settings,
`now_ms`) into one JSON-ready report; `hlstream status`, `hlstream status --json` and the
Prometheus exporter all read that same report (fields: docs/status.md). The pipeline is
unhealthy when any cause below holds; each is one `Problem` with a stable code:
- `supervisord_down`; `stage_not_running`: a stage is not RUNNING;
- `status_missing` / `status_stale`: a stage's status file is missing or older than
  `STATUS_STALE_MS`;
- `file_lagging`: a CSV file's last row ended more than 2 intervals + grace before now (or,
  with no row yet, the writer has been up that long); `file_refused`: the writer refused one;
- `ingest_disconnected`: not every ingest link has been up for `health_disconnected_seconds`;
- `no_trade`: while connected, a coin that trades has had no trade for its limit: the larger
  of `health_no_trade_seconds` and `TRADE_GAP_FACTOR` times its mean gap between distinct
  trade times over the (up to) 15 minutes before its last trade; a coin with fewer than
  `MIN_TRADE_TIMES` such times trades too rarely to judge and is never flagged. Silence is
  counted from the later of its last trade and the connection's start;
- `rest_failing`: a stage's REST requests have failed with no success for
  `health_rest_failing_seconds` (it clears at the next successful request).
Counters come from the status files, so they count since that stage last started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hlstream import STAGES
from hlstream.common.config import Settings
from hlstream.common.errors import ConfigError
from hlstream.common.status import FeedStatus, StageStatus, TradeActivity
from hlstream.common.timebucket import format_window, parse_interval
from hlstream.verify import plural

STATUS_STALE_MS = 5_000
LAG_INTERVALS = 2
# A coin is judged only with at least this many distinct trade times in the window ingest
# holds, and flagged only after this many of its mean gaps without a trade: a Poisson coin
# stays silent that long with probability e^-20; bursty, thin coins stay below the minimum.
MIN_TRADE_TIMES = 20
TRADE_GAP_FACTOR = 20
ERROR_CHARS = 160  # of a REST error quoted in a problem


@dataclass(frozen=True, slots=True)
class Problem:
    """One cause of `unhealthy`: a stable `code` (a metric label) and a one-line message."""

    code: str
    message: str


def _secs(ms: float) -> str:
    """`95 s`, `2.5 s`: durations inside problem messages."""
    seconds = ms / 1000
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


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
) -> tuple[dict[str, Any], list[Problem]]:
    problems = []
    state = str(info.get("statename", "UNKNOWN")) if info else "UNKNOWN"
    if not supervisord_running:
        state = "DOWN"  # reported once as "supervisord is not running"
    uptime_s = None
    if info and state == "RUNNING" and _int(info.get("start")) and _int(info.get("now")):
        uptime_s = max(0, int(info["now"]) - int(info["start"]))
    if state not in ("RUNNING", "DOWN"):
        problems.append(Problem("stage_not_running", f"stage {name} is {state}"))
    status_age_s = None if status is None else _age_s(now_ms, status.ts_ms)
    if status_age_s is None:
        problems.append(Problem("status_missing", f"stage {name} has no status file"))
    elif status_age_s * 1000 > STATUS_STALE_MS:
        problems.append(Problem("status_stale", f"stage {name} status is {status_age_s:.1f}s old"))
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
) -> tuple[dict[str, Any], list[Problem]]:
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
            problems.append(
                Problem("file_lagging", f"file {name} {what} (limit {limit_ms / 1000:.0f}s)")
            )
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
        problems.append(Problem("file_refused", f"writer refused {key}: {error}"))
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


def no_trade_limit_ms(activity: TradeActivity | None, threshold_ms: int) -> int | None:
    """How long `activity`'s coin may go without a trade; None when it trades too rarely."""
    if activity is None or activity.times < MIN_TRADE_TIMES:
        return None
    mean_gap_ms = activity.span_ms / (activity.times - 1)
    return max(threshold_ms, round(TRADE_GAP_FACTOR * mean_gap_ms))


def _feed_problems(feed: FeedStatus, settings: Settings, now_ms: int) -> list[Problem]:
    """`ingest_disconnected` and `no_trade` (judged only while connected)."""
    if not feed.connected:
        since = feed.disconnected_since_ms
        limit_ms = int(settings.health_disconnected_seconds * 1000)
        if since is None or now_ms - since <= limit_ms:
            return []
        links = "" if feed.links <= 1 else f"; {feed.links_up} of {feed.links} links up"
        down = _secs(now_ms - since)
        message = f"ingest not connected for {down} (limit {_secs(limit_ms)}{links})"
        return [Problem("ingest_disconnected", message)]
    problems = []
    threshold_ms = int(settings.health_no_trade_seconds * 1000)
    for coin, last_ms in sorted(feed.last_trade_ms.items()):
        coin_limit_ms = no_trade_limit_ms(feed.activity.get(coin), threshold_ms)
        if coin_limit_ms is None or coin in feed.delisted:
            continue
        silent_ms = now_ms - max(last_ms, feed.connected_since_ms or 0)
        if silent_ms > coin_limit_ms:
            scaled = "" if coin_limit_ms == threshold_ms else f", {TRADE_GAP_FACTOR}x its mean gap"
            limit = _secs(coin_limit_ms)
            message = f"no trade on {coin} for {_secs(silent_ms)} (limit {limit}{scaled})"
            problems.append(Problem("no_trade", message))
    return problems


def _rest(
    statuses: Mapping[str, StageStatus | None], settings: Settings, now_ms: int
) -> tuple[dict[str, Any], list[Problem]]:
    """Each REST-calling stage's failure run, and `rest_failing` past the limit."""
    out: dict[str, Any] = {}
    problems = []
    limit_ms = int(settings.health_rest_failing_seconds * 1000)
    for name in STAGES:
        status = statuses.get(name)
        rest = None if status is None else status.rest
        if rest is None:
            continue
        since = rest.failing_since_ms
        out[name] = {
            "failing_s": None if since is None else _age_s(now_ms, since),
            "failures": rest.failures,
            "last_error": rest.last_error or None,
            "last_ok_ms": rest.last_ok_ms,
        }
        if since is not None and now_ms - since > limit_ms:
            error = rest.last_error[:ERROR_CHARS]
            problems.append(
                Problem(
                    "rest_failing",
                    f"{name} REST failing for {_secs(now_ms - since)} (limit {_secs(limit_ms)}; "
                    f"{rest.failures} failed requests, none succeeded since; last: {error})",
                )
            )
    return out, problems


def build_report(
    settings: Settings,
    supervisord_running: bool,
    processes: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, StageStatus | None],
    now_ms: int,
    inexact: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The health report (JSON-ready) for one run dir; `inexact`: rows not exact per file."""
    problems: list[Problem] = []
    if not supervisord_running:
        problems.append(
            Problem("supervisord_down", f"supervisord is not running (run dir {settings.run_dir})")
        )
    stages: dict[str, Any] = {}
    for name in STAGES:
        entry, found = _stage(
            name, supervisord_running, processes.get(name), statuses.get(name), now_ms
        )
        stages[name] = entry
        problems.extend(found)
    ingest = statuses.get("ingest")
    feed = None if ingest is None else ingest.feed
    if feed is not None:
        problems.extend(_feed_problems(feed, settings, now_ms))
    last_trades = {} if feed is None else feed.last_trade_ms
    threshold_ms = int(settings.health_no_trade_seconds * 1000)
    coins: dict[str, Any] = {}
    # The coins ingest reports (the running config), else this command's configured coins.
    for coin in list(last_trades) or list(settings.coins):
        ts_ms = last_trades.get(coin)
        limit_ms = (
            None if feed is None else no_trade_limit_ms(feed.activity.get(coin), threshold_ms)
        )
        coins[coin] = {
            "last_trade_ms": ts_ms,
            "last_trade_age_s": _age_s(now_ms, ts_ms),
            "no_trade_limit_s": None if limit_ms is None else limit_ms / 1000,
        }
    files, file_problems = _files(
        statuses.get("writer"), settings, now_ms, stages["writer"]["uptime_s"]
    )
    problems.extend(file_problems)
    rest, rest_problems = _rest(statuses, settings, now_ms)
    problems.extend(rest_problems)
    for name, info in files.items():
        info["inexact_rows"] = (inexact or {}).get(name, 0)
    disconnected_since = None if feed is None else feed.disconnected_since_ms
    return {
        "healthy": not problems,
        "problems": [problem.message for problem in problems],
        "causes": [{"code": p.code, "message": p.message} for p in problems],
        "now_ms": now_ms,
        "run_dir": str(settings.run_dir),
        "data_dir": str(settings.data_dir),
        "supervisord": supervisord_running,
        "connected": None if feed is None else feed.connected,
        "connected_since_ms": None if feed is None else feed.connected_since_ms,
        "disconnected_since_ms": disconnected_since,
        "disconnected_s": _age_s(now_ms, disconnected_since),
        "backlog_bytes": None if feed is None else feed.backlog_bytes,
        "limits": {
            "disconnected_s": settings.health_disconnected_seconds,
            "no_trade_s": settings.health_no_trade_seconds,
            "rest_failing_s": settings.health_rest_failing_seconds,
        },
        "stages": stages,
        "coins": coins,
        "files": files,
        "rest": rest,
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
    verdict = (
        "HEALTHY"
        if report["healthy"]
        else f"UNHEALTHY ({plural(len(report['problems']), 'problem')})"
    )
    lines = [f"hlstream {verdict}  run dir {report['run_dir']}  data dir {report['data_dir']}"]
    lines += [f"UNHEALTHY: {problem}" for problem in report["problems"]]
    lines.append("")
    lines.append(f"{'STAGE':<12}{'STATE':<10}{'PID':>8}{'UPTIME':>10}{'STATUS AGE':>12}")
    for name, stage in report["stages"].items():
        lines.append(
            f"{name:<12}{stage['state']:<10}{_show(stage['pid']):>8}"
            f"{format_duration(stage['uptime_s']):>10}{format_duration(stage['status_age_s']):>12}"
        )
    connected = {True: "yes", False: "NO", None: "-"}[report["connected"]]
    if report["disconnected_s"] is not None:
        connected += f" for {format_duration(report['disconnected_s'])}"
    backlog = report.get("backlog_bytes")
    unread = "" if not backlog else f", {backlog} bytes not yet handled"
    lines += [
        "",
        f"{'COIN':<16}{'LAST TRADE AGE':>16}{'LIMIT':>8}    "
        f"(ingest connected: {connected}{unread})",
    ]
    for coin, info in report["coins"].items():
        lines.append(
            f"{coin:<16}{format_duration(info['last_trade_age_s']):>16}"
            f"{format_duration(info['no_trade_limit_s']):>8}"
        )
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
    for stage, rest in report["rest"].items():  # failing, not yet for long enough to count
        if (
            rest["failing_s"] is not None
            and rest["failing_s"] <= report["limits"]["rest_failing_s"]
        ):
            lines.append(
                f"{stage} REST failing for {format_duration(rest['failing_s'])}: "
                f"{rest['failures']} failed requests, last: {rest['last_error']}"
            )
    return "\n".join(lines)
