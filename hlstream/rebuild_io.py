"""`hlstream rebuild`: re-derive bar CSV files of any interval from the trade tape (pure part:
hlstream/rebuild.py). The range defaults to what the tape covers whole; a file with a defect
the tape settles is replaced atomically under its `flock(LOCK_EX)`, any other is untouched
(a second run is a no-op); a file the running writer appends to is never replaced under it.
"""

from __future__ import annotations

import fcntl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import accumulate
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from hlstream.common import inexact_io
from hlstream.common.clock import now_ms
from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.csvrow import HEADER, HEADER_LINE, Row, format_row
from hlstream.common.decimals import format_decimal
from hlstream.common.durable import write_atomic
from hlstream.common.errors import ConfigError, HlstreamError, IntegrityError
from hlstream.common.filenames import csv_filename
from hlstream.common.status_io import read_status
from hlstream.common.tape.format import Record, segment_day
from hlstream.common.tape.readers_io import read_span, segment_days, segment_size, tape_coins
from hlstream.common.timebucket import bucket_start, parse_interval
from hlstream.rebuild import (
    Change,
    Comparison,
    FileLines,
    Window,
    compare,
    journal_after,
    metered,
    parse_lines,
    tape_bars,
)
from hlstream.services.writer.core import row_of
from hlstream.services.writer.dirlock import writer_running
from hlstream.verify import Finding, plural
from hlstream.verify_io import snapshot_lines

STATUS_FRESH_MS = 10_000  # ingest writes its status every second; older is not trusted

Seg = tuple[str, int]  # a tape segment's day and size in bytes


@dataclass(frozen=True, slots=True)
class Request:
    interval: str
    coins: tuple[str, ...]
    from_ms: int | None
    to_ms: int | None
    check: bool


def parse_time(text: str, name: str) -> int:
    """`2026-11-30`, `2026-11-30T10:05[:00]` (UTC unless an offset is given) or epoch ms."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--{name} {text!r}: expected a UTC date/time like 2026-11-30T10:05 or epoch ms"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def writer_intervals(settings: Settings) -> set[str]:
    """Intervals a running writer may have open: configured here, or in its status file."""
    status = read_status(settings.run_dir, "writer")
    files = {} if status is None else status.files
    return set(settings.intervals) | {info.interval for info in files.values()}


def coverage_end(settings: Settings, coin: str, running: bool) -> int | None:
    """Up to when the tape of `coin` holds everything: while the pipeline runs, ingest's
    covered_ms; else the newest record (its window may be unfinished, so it is left out)."""
    status = read_status(settings.run_dir, "ingest") if running else None
    fresh = status is not None and now_ms() - status.ts_ms < STATUS_FRESH_MS
    feed = status.feed if fresh and status is not None else None
    if feed is not None and feed.covered_ms:
        return feed.covered_ms
    from hlstream.rebuild_frames_io import newest_ts_ms

    return newest_ts_ms(settings.data_dir, coin)


def _segments(data_dir: Path, coin: str, from_ms: int | None, to_ms: int | None) -> list[Seg]:
    """(day, size) of every tape segment of `coin` holding [from_ms, to_ms)."""
    first = None if from_ms is None else segment_day(from_ms)
    last = None if to_ms is None else segment_day(to_ms - 1)
    return [
        (day, segment_size(data_dir, coin, day))
        for day in segment_days(data_dir, coin)
        if (first is None or day >= first) and (last is None or day <= last)
    ]


def _tape_records(
    data_dir: Path, coin: str, from_ms: int, to_ms: int, step: Callable[[int], None]
) -> Iterator[Record]:
    """The tape records of `coin` for [from_ms, to_ms), reporting each byte read to `step`."""
    for day, size in _segments(data_dir, coin, from_ms, to_ms):
        spans = ((record, at.offset) for record, at in read_span(data_dir, coin, day, 0, size))
        yield from metered(spans, size, step)


def _plan(
    settings: Settings,
    request: Request,
    coin: str,
    path: Path,
    running: bool,
    live: bool,
    step: Callable[[int], None],
) -> Comparison:
    """The file of `coin` compared with the tape, and the rows a rebuild gives it."""
    interval_ms = parse_interval(request.interval)
    file = parse_lines(snapshot_lines(path)) if path.exists() else FileLines()
    if file.foreign:
        raise IntegrityError(f"{path} does not start with {HEADER!r}; not touching it")
    starts = [item.row.start_ms for item in file.rows]
    from hlstream.rebuild_frames_io import coverage_start_ms, last_price_before

    covered_from = coverage_start_ms(settings.data_dir, coin)
    end, start = request.to_ms, request.from_ms
    if end is None:
        end = coverage_end(settings, coin, running)
        if live and starts and end is not None:  # rows the writer has not written yet
            end = min(end, max(starts) + interval_ms)
    if start is None and covered_from is not None:  # the file's range, not older
        start = max(covered_from, min(starts)) if starts else covered_from
    if start is None or end is None:
        return compare(file, [], set(), interval_ms)
    from_ms, to_ms = bucket_start(start, interval_ms), bucket_start(end, interval_ms)
    if to_ms <= from_ms:
        return compare(file, [], set(), interval_ms)
    window = Window(request.interval, interval_ms, from_ms, to_ms)
    before = last_price_before(settings.data_dir, coin, from_ms)
    seed = None if before is None else format_decimal(Decimal(before))
    if seed is None:
        earlier = [item.row for item in file.rows if item.row.start_ms < from_ms]
        seed = max(earlier, key=lambda row: row.start_ms).close if earlier else None
    rows, inexact = _tape_rows(settings.data_dir, coin, window, covered_from, seed, step)
    return compare(file, rows, inexact, interval_ms)


def _tape_rows(
    data_dir: Path,
    coin: str,
    window: Window,
    covered_from: int | None,
    seed: str | None,
    step: Callable[[int], None],
) -> tuple[list[Row], set[int]]:
    """The tape's rows of `coin` for `window`, and which are inexact: by one columnar query
    when a day of it is compacted (hlstream/rebuild_columnar.py), else, or when that query
    declines, record by record through the aggregator's core (the same rows)."""
    from hlstream.rebuild_frames_io import has_archived, tape_frame

    segments = _segments(data_dir, coin, window.from_ms, window.to_ms)
    if has_archived(data_dir, coin, segments):
        from hlstream.rebuild_columnar import columnar_bars

        frame = tape_frame(data_dir, coin, segments, step)
        columnar = columnar_bars(coin, window, frame, covered_from, seed)
        if columnar is not None:
            return columnar.rows, columnar.inexact
        step = _no_step  # the bytes were counted once
    records = _tape_records(data_dir, coin, window.from_ms, window.to_ms, step)
    rebuilt = tape_bars(coin, window, records, covered_from, seed)
    if rebuilt.late:
        raise IntegrityError(
            f"tape of {coin} has {plural(rebuilt.late, 'trade')} more than a minute out of order"
        )
    return [row_of(bar) for bar in rebuilt.bars], rebuilt.inexact()


def _no_step(_: int) -> None:
    pass


def _coins(settings: Settings, request: Request, err: TextIO) -> list[str]:
    """The requested coins that have a tape (`all`: every coin on the tape)."""
    taped = tape_coins(settings.data_dir)
    if request.coins == (ALL_COINS,):
        return taped
    without = [coin for coin in request.coins if coin not in taped]
    if without and len(without) < len(request.coins):
        print(f"hlstream rebuild: no trade tape for {', '.join(without)}; skipped", file=err)
    return [coin for coin in request.coins if coin in taped]


def _print(path: Path, findings: list[Finding], out: TextIO) -> None:
    for finding in findings:
        print(f"{path}:{finding.line}: {finding.kind}: {finding.message}", file=out)


def _summary(coin: str, request: Request, result: Comparison) -> str:
    windows = plural(len(result.changes), "window")
    defects = plural(len(result.findings) + len(result.unparsed), "defect")
    return (
        f"{coin} {request.interval}: {windows} from the tape, "
        f"{result.count(Change.SAME)} same, {result.count(Change.DIFFERS)} differ, "
        f"{result.count(Change.MISSING)} missing, {result.count(Change.KEPT)} kept "
        f"(tape not whole there); {defects}"
    )


def _write(path: Path, result: Comparison) -> dict[int, str]:
    """Replace the file with the comparison's rows (and its journal); the journal after."""
    journal = inexact_io.read_journal(path)
    exact_now = journal_after(result, journal)
    if not result.findings and path.exists():
        if exact_now != journal:
            inexact_io.rewrite(path, exact_now)
        return exact_now
    with open(path, "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if exact_now != journal:
            inexact_io.rewrite(path, {**journal, **exact_now})  # entries first, as the writer
        write_atomic(path, (HEADER_LINE + "".join(map(format_row, result.rows))).encode())
        if exact_now != journal:
            inexact_io.rewrite(path, exact_now)
    return exact_now


def run_rebuild(settings: Settings, request: Request, out: TextIO = sys.stdout) -> int:
    """Rebuild (or check) one file per coin; print a line per file. Exit code."""
    err = sys.stderr
    running = writer_running(settings.data_dir)
    live = running and request.interval in writer_intervals(settings)
    if live and not request.check:
        raise ConfigError(
            f"the running writer appends to the {request.interval} files in "
            f"{settings.data_dir}; stop the pipeline first (hlstream stop) or use --check"
        )
    coins = _coins(settings, request, err)
    if not coins:
        wanted = "" if request.coins == (ALL_COINS,) else f" of {', '.join(request.coins)}"
        print(f"hlstream rebuild: no trade tape{wanted} in {settings.data_dir}", file=err)
        return 1
    sizes = [_segments(settings.data_dir, coin, request.from_ms, request.to_ms) for coin in coins]
    allotted = list(accumulate(sum(size for _, size in segments) for segments in sizes))
    progress = tqdm(
        total=allotted[-1], desc="rebuild", unit="B", unit_scale=True, file=err, leave=False
    )
    defects = 0
    try:
        for coin, through in zip(coins, allotted, strict=True):
            path = settings.data_dir / csv_filename(coin, request.interval)
            try:
                result = _plan(settings, request, coin, path, running, live, progress.update)
            except (HlstreamError, OSError, ValueError) as exc:
                print(f"hlstream rebuild: error: {coin}: {exc}", file=err)
                return 1
            progress.update(max(through - progress.n, 0))  # segments outside the file's range
            _print(path, result.unsettled, err)
            summary = _summary(coin, request, result)
            if request.check:
                defects += _report(path, result, summary, out)
            elif not _rebuild_file(path, result, summary, out):
                return 1
    finally:
        progress.close()
    return 1 if defects else 0


def _report(path: Path, result: Comparison, summary: str, out: TextIO) -> int:
    """`--check`: print every defect of one file, and its summary; how many defects."""
    _print(path, sorted(result.findings + result.unparsed, key=lambda f: f.line), out)
    print(summary, file=out)
    return len(result.findings) + len(result.unparsed)


def _rebuild_file(path: Path, result: Comparison, summary: str, out: TextIO) -> bool:
    """Write one file when it has a defect the tape settles; False if it cannot be."""
    err = sys.stderr
    if result.unparsed:
        _print(path, result.unparsed, err)
        unparsed = plural(len(result.unparsed), "line")
        print(
            f"hlstream rebuild: error: {path}: {unparsed} cannot be parsed; not touching it",
            file=err,
        )
        return False
    if not result.rows:
        print(f"{summary}; nothing to write", file=out)
        return True
    changed = bool(result.findings) or not path.exists()
    journal = _write(path, result)
    done = f"written {path}" if changed else "unchanged"
    if journal:
        done += f"; {plural(len(journal), 'row')} not exact (hlstream verify lists them)"
    print(f"{summary}; {done}", file=out)
    return True
