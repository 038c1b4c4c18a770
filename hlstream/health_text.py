"""The human table of `hlstream status` (pure): one `health.Report` in, text out."""

from __future__ import annotations

from hlstream import STAGES
from hlstream.common.status import AuditScore
from hlstream.health import TOTAL_COUNTERS, Report, has_activity
from hlstream.services.relay.core import RelayStatus, SinkStatus
from hlstream.verify import plural

RELAY_STALE_S = 10.0  # a relay heartbeat older than this: the relay is not running
AUDIT_FILES_SHOWN = 20  # more files with audit activity: only those with findings are listed
_AUDIT_COLUMNS = ("AUDITED", "MATCHED", "MISMATCHED", "PENDING", "UNAUDITABLE")


def format_duration(seconds: float | None) -> str:
    """`0.4s`, `12s`, `5m02s`, `3h07m`, `2d04h`; `-` for None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    for unit_s, big, small_s, small in ((86400, "d", 3600, "h"), (3600, "h", 60, "m")):
        if whole >= unit_s:
            return f"{whole // unit_s}{big}{whole % unit_s // small_s:02d}{small}"
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def _show(value: object) -> str:
    return "-" if value is None else str(value)


def _score_line(name: str, width: int, score: AuditScore) -> str:
    values = (score.audited, score.matched, score.mismatched, score.pending, score.unauditable)
    cells = "".join(
        f"{value:>{len(column) + 2}}" for value, column in zip(values, _AUDIT_COLUMNS, strict=True)
    )
    return f"{name:<{width}}{cells}"


def audit_lines(report: Report) -> list[str]:
    """The venue audit's score: a line per file with rows in it, and the total. With more
    than AUDIT_FILES_SHOWN such files, only those with mismatched or unauditable rows."""
    if report.audit is None:
        return []
    active = {name: f.audit for name, f in report.files.items() if has_activity(f.audit)}
    shown = active
    if len(active) > AUDIT_FILES_SHOWN:
        shown = {n: s for n, s in active.items() if s and (s.mismatched or s.unauditable)}
    width = max(24, *(len(name) + 2 for name in shown)) if shown else 24
    header = "".join(f"{column:>{len(column) + 2}}" for column in _AUDIT_COLUMNS)
    lines = ["", f"{'AUDIT (vs venue candles)':<{width}}{header}"]
    lines += [_score_line(name, width, score) for name, score in shown.items() if score]
    total = f"all {plural(len(report.files), 'file')}"
    lines.append(_score_line(total, width, report.audit))
    if len(shown) < len(active):
        lines.append(f"({len(active) - len(shown)} more files, none mismatched: --json lists each)")
    return lines


def format_report(report: Report) -> str:
    """The human table printed by `hlstream status`."""
    verdict = (
        "HEALTHY" if report.healthy else f"UNHEALTHY ({plural(len(report.problems), 'problem')})"
    )
    lines = [f"hlstream {verdict}  run dir {report.run_dir}  data dir {report.data_dir}"]
    lines += [f"UNHEALTHY: {problem}" for problem in report.problems]
    lines += ["", f"{'STAGE':<12}{'STATE':<10}{'PID':>8}{'UPTIME':>10}{'STATUS AGE':>12}"]
    for name, stage in report.stages.items():
        uptime, age = format_duration(stage.uptime_s), format_duration(stage.status_age_s)
        lines.append(f"{name:<12}{stage.state:<10}{_show(stage.pid):>8}{uptime:>10}{age:>12}")
    connected = {True: "yes", False: "NO", None: "-"}[report.connected]
    if report.disconnected_s is not None:
        connected += f" for {format_duration(report.disconnected_s)}"
    unread = f", {report.backlog_bytes} bytes not yet handled" if report.backlog_bytes else ""
    header = f"{'COIN':<16}{'LAST TRADE AGE':>16}{'LIMIT':>8}"
    lines += ["", f"{header}    (ingest connected: {connected}{unread})"]
    for coin, info in report.coins.items():
        age, limit = format_duration(info.last_trade_age_s), format_duration(info.no_trade_limit_s)
        lines.append(f"{coin:<16}{age:>16}{limit:>8}")
    if report.files:
        width = max(24, *(len(name) + 2 for name in report.files))
        lines += ["", f"{'FILE':<{width}}{'LAST BAR (UTC)':<22}{'BEHIND':>10}{'LIMIT':>8}"]
        for name, file in report.files.items():
            flag = "  LAGGING" if file.lagging else ""
            flag += f"  {file.inexact_rows} NOT EXACT" if file.inexact_rows else ""
            behind, limit = format_duration(file.behind_s), format_duration(file.limit_s)
            lines.append(
                f"{name:<{width}}{_show(file.last_datetime):<22}{behind:>10}{limit:>8}{flag}"
            )
    lines += audit_lines(report)
    counters = report.counters
    pairs = [f"{key}={_show(getattr(counters, key))}" for key in TOTAL_COUNTERS]
    pairs.append("malformed=" + "/".join(_show(counters.malformed[name]) for name in STAGES))
    lines += ["", "counters (since each stage started): " + " ".join(pairs)]
    if report.inexact_rows:
        lines += [
            "",
            f"{report.inexact_rows} rows are not exact (partial or carried blind); "
            "`hlstream verify` lists them, `hlstream rebuild` repairs what the tape covers",
        ]
    for name, rest in report.rest.items():  # failing, not yet for long enough to count
        if rest.failing_s is not None and rest.failing_s <= report.limits.rest_failing_s:
            lines.append(
                f"{name} REST failing for {format_duration(rest.failing_s)}: "
                f"{rest.failures} failed requests, last: {rest.last_error}"
            )
    return "\n".join(lines)


def _sink(name: str, sink: SinkStatus) -> str:
    if not sink.configured:
        return ""
    state = "connected" if sink.connected else f"DOWN ({sink.last_error or 'connecting'})"
    return f"{name} {state}"


def relay_line(status: RelayStatus | None, now_ms: int) -> str | None:
    """`relay: nats connected, postgres DOWN (...); lag 0.1 s / 12 trades; published ...`."""
    if status is None:
        return None
    sinks = ", ".join(
        s for s in (_sink("nats", status.nats), _sink("postgres", status.postgres)) if s
    )
    age_s = (now_ms - status.ts_ms) / 1000
    stale = f" STALE ({age_s:.0f} s old)" if age_s > RELAY_STALE_S else ""
    return (
        f"relay: {sinks}{stale}; lag {status.lag_s:.1f} s / {status.lag_trades} trades"
        f" / {status.lag_bytes} bytes; published {status.published}, server-dropped duplicates"
        f" {status.duplicates}, found in stream {status.skipped}; bars {status.bars_published}"
        f" to NATS, {status.bars_upserted} to Postgres; errors {status.errors}"
    )
