"""`hlstream verify --venue`: audit written, settled rows against the venue's candles within a
share of the REST weight budget (1m+ rows by their candle, seconds rows through the 1m candle
of their minute) and list pending revisions; exit 1 on any mismatch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from hlstream.common import clock, revisions_io
from hlstream.common.backoff import WeightBudget
from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.csvrow import Row
from hlstream.common.errors import HlstreamError, IntegrityError
from hlstream.common.filenames import csv_filename, encode_coin
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.common.rest_io import InfoClient
from hlstream.common.status_io import read_status
from hlstream.common.tape.readers_io import tape_coins
from hlstream.common.timebucket import format_window, has_rest_candles, parse_interval
from hlstream.services.writer.audit import (
    MINUTE_MS,
    VENUE_WEIGHT_PER_MINUTE,
    AuditRequest,
    audit_minute,
    compare_row,
    plan_requests,
)
from hlstream.services.writer.candles_io import CandleSource
from hlstream.verify import FileRow, ohlcv_text, plural, revised_findings, scan_lines
from hlstream.verify_io import snapshot_lines

AUDIT_SETTLE_MS = 120_000
AUDIT_WEIGHT_SHARE = 0.5  # of the venue's 1200 a minute; the writer keeps the rest
FETCH_ATTEMPTS = 3

Fetch = Callable[[AuditRequest], list[Bar]]


@dataclass(frozen=True, slots=True)
class Target:
    """One file to audit: its coin and interval, and its rows by line number."""

    path: Path
    coin: str
    interval: str
    rows: list[tuple[int, Row]]


@dataclass
class Tally:
    audited: int = 0
    matched: int = 0
    mismatched: int = 0
    unauditable: int = 0


def read_rows(path: Path) -> list[tuple[int, Row]]:
    """(line number, row) of every row `hlstream verify` reads, under a brief shared lock."""
    lines = scan_lines(snapshot_lines(path))
    return [(item.line, item.row) for item in lines if isinstance(item, FileRow)]


def file_coins(settings: Settings, err: TextIO) -> tuple[str, ...]:
    """The configured coins; for `all`, the coins with a file of a configured interval in the
    data dir. A file name lowercases its coin, so the venue's spelling comes from the tape and
    the writer's status; a file neither names is skipped, with a line on `err`."""
    if settings.coins != (ALL_COINS,):
        return settings.coins
    writer = read_status(settings.run_dir, "writer")
    named = {
        *tape_coins(settings.data_dir),
        *(f.coin for f in (writer.files if writer else {}).values()),
    }
    by_prefix = {encode_coin(coin): coin for coin in sorted(named)}
    found: set[str] = set()
    for interval in settings.intervals:
        suffix = f"_{interval}_data.csv"
        for path in sorted(settings.data_dir.glob(f"*{suffix}")):
            coin = by_prefix.get(path.name[: -len(suffix)])
            if coin is None:
                err.write(f"hlstream verify --venue: {path}: no tape names its coin; skipped\n")
            else:
                found.add(coin)
    return tuple(sorted(found))


def targets(
    settings: Settings, from_ms: int | None, to_ms: int | None, now_ms: int, err: TextIO
) -> list[Target]:
    """Every existing file of the configured coins and intervals, with its settled rows."""
    found = []
    end = now_ms - AUDIT_SETTLE_MS if to_ms is None else min(to_ms, now_ms - AUDIT_SETTLE_MS)
    for coin in file_coins(settings, err):
        for interval in settings.intervals:
            path = settings.data_dir / csv_filename(coin, interval)
            if not path.exists():
                continue
            step = parse_interval(interval)
            rows = [
                (line, row)
                for line, row in read_rows(path)
                if (from_ms is None or row.start_ms >= from_ms) and row.start_ms + step <= end
            ]
            found.append(Target(path, coin, interval, rows))
    return found


def audit_target(target: Target, fetch: Fetch, out: TextIO, tally: Tally) -> Iterator[int]:
    """Audit one file, printing its mismatches; yields after each request (for progress)."""
    rest = has_rest_candles(target.interval)
    step = parse_interval(target.interval) if rest else MINUTE_MS
    label = target.interval if rest else "1m"
    starts = {row.start_ms - row.start_ms % step for _, row in target.rows}
    for request in plan_requests({(target.coin, label): starts}, {label: step}):
        candles = {bar.start_ms: bar for bar in fetch(request)}
        inside = [
            (line, row)
            for line, row in target.rows
            if request.start_ms <= row.start_ms < request.end_ms
        ]
        if rest:
            _compare_rows(target, inside, candles, out, tally)
        else:
            _compare_minutes(target, inside, candles, out, tally)
        yield request.candles


def _compare_rows(
    target: Target,
    rows: Sequence[tuple[int, Row]],
    candles: dict[int, Bar],
    out: TextIO,
    tally: Tally,
) -> None:
    for line, row in rows:
        candle = candles.get(row.start_ms)
        if candle is None:
            tally.unauditable += 1
            continue
        tally.audited += 1
        mismatch = compare_row(row, candle)
        if mismatch is None:
            tally.matched += 1
            continue
        tally.mismatched += 1
        fields = ",".join(name for name, _, _ in mismatch.fields)
        out.write(
            f"{target.path}:{line}: venue_mismatch: {format_window(row.start_ms)} {fields}: "
            f"ours {ohlcv_text(row)} venue {ohlcv_text(candle)} n={candle.trades}\n"
        )


def _compare_minutes(
    target: Target,
    rows: Sequence[tuple[int, Row]],
    candles: dict[int, Bar],
    out: TextIO,
    tally: Tally,
) -> None:
    step = parse_interval(target.interval)
    by_minute: dict[int, list[tuple[int, Row]]] = {}
    for line, row in rows:
        by_minute.setdefault(row.start_ms - row.start_ms % MINUTE_MS, []).append((line, row))
    for minute_ms, members in sorted(by_minute.items()):
        candle = candles.get(minute_ms)
        if candle is None or len(members) * step < MINUTE_MS:
            tally.unauditable += len(members)  # no candle, or the minute is cut by --from/--to
            continue
        tally.audited += len(members)
        audit = audit_minute([row for _, row in members], candle, step)
        if not audit.problems:
            tally.matched += len(members)
            continue
        tally.mismatched += len(members)
        out.write(
            f"{target.path}:{members[0][0]}: venue_mismatch: minute {format_window(minute_ms)} "
            f"({len(members)} rows): {'; '.join(audit.problems)}: venue {ohlcv_text(candle)} "
            f"n={candle.trades}\n"
        )


def list_revisions(target: Target, out: TextIO) -> int:
    """Print the file's pending revisions as `hlstream verify` does; return how many."""
    try:
        revisions = revisions_io.read(target.path)
    except IntegrityError as exc:
        out.write(f"{revisions_io.revisions_path(target.path)}:0: revisions: {exc}\n")
        return 1
    found = revised_findings(target.rows, revisions)
    for finding in found:
        out.write(f"{target.path}:{finding.line}: {finding.kind}: {finding.message}\n")
    return len(found)


def run_venue_audit(
    settings: Settings,
    from_ms: int | None,
    to_ms: int | None,
    out: TextIO,
    err: TextIO,
    fetch: Fetch | None = None,
) -> int:
    """Audit every configured file against the venue; 1 on any mismatch, else 0."""
    found = targets(settings, from_ms, to_ms, clock.now_ms(), err)
    if not found:
        err.write(
            f"hlstream verify --venue: no files of the configured coins in {settings.data_dir}\n"
        )
        return 1
    fetch = fetch or _fetcher(settings)
    tally = Tally()
    revised = 0
    progress = tqdm(
        total=sum(len(t.rows) for t in found),
        desc="venue audit",
        unit="row",
        file=err,
        ascii=" #",
        bar_format="{desc} [{bar:30}] {n_fmt}/{total_fmt} rows",
    )
    try:
        for target in found:
            try:
                for _ in audit_target(target, fetch, out, tally):
                    progress.n = tally.audited + tally.unauditable
                    progress.refresh()
            except HlstreamError as exc:
                out.write(f"{target.path}:0: venue_unreachable: {exc}\n")
                tally.unauditable += len(target.rows)
            revised += list_revisions(target, out)
    finally:
        progress.close()
    out.flush()
    err.write(
        f"hlstream verify --venue: {plural(len(found), 'file')}, {plural(tally.audited, 'row')} "
        f"audited: {tally.matched} matched, {tally.mismatched} mismatched, "
        f"{tally.unauditable} unauditable, {plural(revised, 'revision')} pending\n"
    )
    return 1 if tally.mismatched or revised else 0


def _fetcher(settings: Settings) -> Fetch:
    """candleSnapshot through the writer's CandleSource, under a budget of our share."""
    with_minute = replace(settings, intervals=tuple(dict.fromkeys((*settings.intervals, "1m"))))
    source = CandleSource(
        InfoClient(settings.info_url, timeout_s=10.0),
        with_minute,
        StopFlag(),
        EventLog("cli"),
        now_ms=clock.now_ms,
        sleep=time.sleep,
        rng=random.Random(),
    )
    source.budget = WeightBudget(AUDIT_WEIGHT_SHARE * VENUE_WEIGHT_PER_MINUTE)

    def fetch(request: AuditRequest) -> list[Bar]:
        return source.candles(
            request.coin, request.interval, request.start_ms, request.end_ms, FETCH_ATTEMPTS
        )

    return fetch
