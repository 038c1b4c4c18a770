"""Pipeline health (pure): one typed `Report` from supervisord's process table, the stages'
status files, the settings and `now_ms`; `hlstream status`, `--json` and /metrics read it.
Each cause of `unhealthy` is a `Problem` with a stable code; docs/status.md lists every cause
and field, and why a coin is judged for `no_trade` only after MIN_TRADE_TIMES trade times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from hlstream import STAGES
from hlstream.common.config import Settings
from hlstream.common.status import AuditScore, FeedStatus, StageStatus, TradeActivity
from hlstream.common.timebucket import format_window, parse_interval

STATUS_STALE_MS = 5_000
LAG_INTERVALS = 2
MIN_TRADE_TIMES = 20
TRADE_GAP_FACTOR = 20
ERROR_CHARS = 160  # of a REST error quoted in a problem
# Report counter -> (stage, that stage's counter); the order is the report's.
COUNTER_SOURCES = {
    "reconnects": ("ingest", "reconnects"),
    "gaps": ("ingest", "gaps"),
    "duplicate_trades": ("ingest", "duplicates"),
    "lost_messages": ("aggregator", "lost_messages"),
    "late_trades": ("aggregator", "late_trades"),
    "pending_bars": ("aggregator", "pending_bars"),
    "partial_bars": ("writer", "partial_written"),
    "holes_repaired": ("writer", "holes_repaired"),
    "rest_errors": ("writer", "rest_errors"),
    "write_errors": ("writer", "write_errors"),
    "ingest_behind": ("ingest", "behind"),
    "rows_audited": ("writer", "rows_audited"),
    "rows_mismatched": ("writer", "rows_mismatched"),
    "audit_pending": ("writer", "audit_pending"),
}
# The counters shown as totals: the writer's audit totals are shown per file (FILE.audit).
_AUDIT_TOTALS = ("rows_audited", "rows_mismatched", "audit_pending")
TOTAL_COUNTERS = [key for key in COUNTER_SOURCES if key not in _AUDIT_TOTALS]


class ProcessInfo(msgspec.Struct, frozen=True):
    """A stage as supervisord's `getAllProcessInfo` reports it (the fields read here)."""

    name: str
    statename: str = "UNKNOWN"
    pid: int = 0
    start: int = 0  # epoch seconds
    now: int = 0
    exitstatus: int = 0


class Problem(msgspec.Struct, frozen=True):
    """One cause of `unhealthy`: a stable `code` (a metric label) and a one-line message."""

    code: str
    message: str


class StageHealth(msgspec.Struct, frozen=True):
    state: str
    pid: int | None
    uptime_s: int | None
    status_age_s: float | None
    ok: bool


class CoinHealth(msgspec.Struct, frozen=True):
    last_trade_ms: int | None
    last_trade_age_s: float | None
    no_trade_limit_s: float | None


class FileHealth(msgspec.Struct, frozen=True):
    coin: str
    interval: str
    last_start_ms: int | None
    last_datetime: str | None
    behind_s: float | None
    limit_s: float
    lagging: bool
    inexact_rows: int
    audit: AuditScore | None  # None: the audit is off


class RestHealth(msgspec.Struct, frozen=True):
    failing_s: float | None
    failures: int
    last_error: str | None
    last_ok_ms: int | None


class Limits(msgspec.Struct, frozen=True):
    disconnected_s: float
    no_trade_s: float
    rest_failing_s: float


class Counters(msgspec.Struct, frozen=True):
    """Counts since each reporting stage started (None: no status file); see COUNTER_SOURCES."""

    reconnects: int | None
    gaps: int | None
    duplicate_trades: int | None
    lost_messages: int | None
    late_trades: int | None
    pending_bars: int | None
    partial_bars: int | None
    holes_repaired: int | None
    rest_errors: int | None
    write_errors: int | None
    ingest_behind: int | None
    malformed: dict[str, int | None]
    rows_audited: int | None = None  # the venue audit (services/writer/auditor_io.py)
    rows_mismatched: int | None = None
    audit_pending: int | None = None


class Report(msgspec.Struct, frozen=True):
    """The health report; `msgspec.to_builtins` of it is `hlstream status --json`."""

    healthy: bool
    problems: list[str]
    causes: list[Problem]
    now_ms: int
    run_dir: str
    data_dir: str
    supervisord: bool
    connected: bool | None
    connected_since_ms: int | None
    disconnected_since_ms: int | None
    disconnected_s: float | None
    backlog_bytes: int | None
    limits: Limits
    stages: dict[str, StageHealth]
    coins: dict[str, CoinHealth]
    files: dict[str, FileHealth]
    rest: dict[str, RestHealth]
    counters: Counters
    inexact_rows: int
    audit: AuditScore | None  # the files' scores summed; None: the audit is off


def _secs(ms: float) -> str:
    """`95 s`, `2.5 s`: durations inside problem messages."""
    seconds = ms / 1000
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def _age_s(now_ms: int, ts_ms: int | None) -> float | None:
    return None if ts_ms is None else round(max(0, now_ms - ts_ms) / 1000, 3)


def _stage_health(
    name: str,
    supervisord_running: bool,
    info: ProcessInfo | None,
    status: StageStatus | None,
    now_ms: int,
    problems: list[Problem],
) -> StageHealth:
    found = len(problems)
    # Without supervisord every stage is DOWN, reported once as `supervisord_down`.
    state = (info.statename if info else "UNKNOWN") if supervisord_running else "DOWN"
    running = info is not None and state == "RUNNING"
    uptime_s = None
    if info is not None and running and info.start and info.now:
        uptime_s = max(0, info.now - info.start)
    if state not in ("RUNNING", "DOWN"):
        problems.append(Problem("stage_not_running", f"stage {name} is {state}"))
    age_s = None if status is None else _age_s(now_ms, status.ts_ms)
    if age_s is None:
        problems.append(Problem("status_missing", f"stage {name} has no status file"))
    elif age_s * 1000 > STATUS_STALE_MS:
        problems.append(Problem("status_stale", f"stage {name} status is {age_s:.1f}s old"))
    pid = (info.pid if info else 0) or None
    return StageHealth(state, pid, uptime_s, age_s, len(problems) == found and running)


def _files(
    writer: StageStatus | None,
    settings: Settings,
    now_ms: int,
    writer_uptime_s: int | None,
    inexact: Mapping[str, int],
    problems: list[Problem],
) -> dict[str, FileHealth]:
    out = {}
    grace_ms = int(settings.grace_seconds * 1000)
    for name, info in sorted(({} if writer is None else writer.files).items()):
        interval_ms = parse_interval(info.interval)  # the writer runs only validated intervals
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
            message = f"file {name} {what} (limit {limit_ms / 1000:.0f}s)"
            problems.append(Problem("file_lagging", message))
        out[name] = FileHealth(
            coin=info.coin,
            interval=info.interval,
            last_start_ms=last,
            last_datetime=None if last is None else format_window(last),
            behind_s=None if behind_ms is None else round(behind_ms / 1000, 3),
            limit_s=limit_ms / 1000,
            lagging=lagging,
            inexact_rows=inexact.get(name, 0),
            audit=info.audit,
        )
    for key, error in ({} if writer is None else writer.refused).items():
        problems.append(Problem("file_refused", f"writer refused {key}: {error}"))
    return out


def _counters(statuses: Mapping[str, StageStatus | None]) -> Counters:
    def count(stage: str, name: str) -> int | None:
        status = statuses.get(stage)
        return None if status is None else status.counter(name)

    malformed = {stage: count(stage, "malformed") for stage in STAGES}
    sources = COUNTER_SOURCES.items()
    return Counters(**{key: count(*source) for key, source in sources}, malformed=malformed)


def total_score(scores: Iterable[AuditScore | None]) -> AuditScore | None:
    """The sum of the files' scores; None when no file has one (the audit is off)."""
    known = [msgspec.structs.astuple(score) for score in scores if score is not None]
    return AuditScore(*map(sum, zip(*known, strict=True))) if known else None


def has_activity(score: AuditScore | None) -> bool:
    """True when the file has rows in any state of the audit."""
    return score is not None and (score.audited + score.pending + score.unauditable) > 0


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
    statuses: Mapping[str, StageStatus | None],
    settings: Settings,
    now_ms: int,
    problems: list[Problem],
) -> dict[str, RestHealth]:
    """Each REST-calling stage's failure run, and `rest_failing` past the limit."""
    out = {}
    limit_ms = int(settings.health_rest_failing_seconds * 1000)
    for name in STAGES:
        status = statuses.get(name)
        rest = None if status is None else status.rest
        if rest is None:
            continue
        since = rest.failing_since_ms
        failing_s = None if since is None else _age_s(now_ms, since)
        out[name] = RestHealth(failing_s, rest.failures, rest.last_error or None, rest.last_ok_ms)
        if since is not None and now_ms - since > limit_ms:
            message = (
                f"{name} REST failing for {_secs(now_ms - since)} (limit {_secs(limit_ms)}; "
                f"{rest.failures} failed requests, none succeeded since; "
                f"last: {rest.last_error[:ERROR_CHARS]})"
            )
            problems.append(Problem("rest_failing", message))
    return out


def _coins(feed: FeedStatus | None, settings: Settings, now_ms: int) -> dict[str, CoinHealth]:
    """The coins ingest reports (the running config), else this command's configured coins."""
    last_trades = {} if feed is None else feed.last_trade_ms
    activity = {} if feed is None else feed.activity
    threshold_ms = int(settings.health_no_trade_seconds * 1000)
    out = {}
    for coin in list(last_trades) or list(settings.coins):
        ts_ms = last_trades.get(coin)
        limit_ms = no_trade_limit_ms(activity.get(coin), threshold_ms)
        limit_s = None if limit_ms is None else limit_ms / 1000
        out[coin] = CoinHealth(ts_ms, _age_s(now_ms, ts_ms), limit_s)
    return out


def build_report(
    settings: Settings,
    supervisord_running: bool,
    processes: Mapping[str, ProcessInfo],
    statuses: Mapping[str, StageStatus | None],
    now_ms: int,
    inexact: Mapping[str, int] | None = None,
) -> Report:
    """The health report for one run dir; `inexact`: rows not exact per file."""
    problems: list[Problem] = []
    if not supervisord_running:
        message = f"supervisord is not running (run dir {settings.run_dir})"
        problems.append(Problem("supervisord_down", message))
    stages = {
        name: _stage_health(
            name, supervisord_running, processes.get(name), statuses.get(name), now_ms, problems
        )
        for name in STAGES
    }
    ingest = statuses.get("ingest")
    feed = None if ingest is None else ingest.feed
    if feed is not None:
        problems.extend(_feed_problems(feed, settings, now_ms))
    inexact = inexact or {}
    writer_uptime_s = stages["writer"].uptime_s
    files = _files(statuses.get("writer"), settings, now_ms, writer_uptime_s, inexact, problems)
    rest = _rest(statuses, settings, now_ms, problems)
    disconnected_since = None if feed is None else feed.disconnected_since_ms
    return Report(
        healthy=not problems,
        problems=[problem.message for problem in problems],
        causes=problems,
        now_ms=now_ms,
        run_dir=str(settings.run_dir),
        data_dir=str(settings.data_dir),
        supervisord=supervisord_running,
        connected=None if feed is None else feed.connected,
        connected_since_ms=None if feed is None else feed.connected_since_ms,
        disconnected_since_ms=disconnected_since,
        disconnected_s=_age_s(now_ms, disconnected_since),
        backlog_bytes=None if feed is None else feed.backlog_bytes,
        limits=Limits(
            settings.health_disconnected_seconds,
            settings.health_no_trade_seconds,
            settings.health_rest_failing_seconds,
        ),
        stages=stages,
        coins=_coins(feed, settings, now_ms),
        files=files,
        rest=rest,
        counters=_counters(statuses),
        inexact_rows=sum(inexact.values()),
        audit=total_score(file.audit for file in files.values()),
    )
