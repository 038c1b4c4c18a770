"""`hlstream rebuild --interval I [--coins ...] [--from T] [--to T] [--check]`: re-derive bar
CSV files from the trade tape (the pure part is hlstream/rebuild.py).

- Any interval, configured or not (`15s`, `4h`); the file is the one the writer would use.
- The range defaults to what the tape covers: from its first record (or the file's first
  row, if later) to the start of the window holding the newest record (ingest's `covered_ms`
  while it runs; for a file the writer is appending to, its last row), so a window the tape
  may not have whole yet is never rewritten. `--from` reaches further back.
- Atomic: the new file is written beside the old one, fsynced and renamed over it, under the
  old file's `flock(LOCK_EX)`. A file whose rows would not change is not touched, so a second
  run is a no-op (idempotent).
- `--check` changes nothing: it lists every row that differs from the tape, or is missing,
  and exits 1 if there is any.
- A file the running writer appends to is never replaced under it (its open descriptor would
  keep writing to the old file): stop the pipeline first, or use `--check`.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from hlstream.common import inexact_io
from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.csvrow import HEADER_LINE, Row, parse_row
from hlstream.common.decimals import format_decimal
from hlstream.common.errors import ConfigError, HlstreamError, IntegrityError
from hlstream.common.filenames import csv_filename
from hlstream.common.status_io import read_status
from hlstream.common.tape_read_io import (
    coverage_start_ms,
    last_trade_before,
    newest_ts_ms,
    read_tape,
    tape_coins,
)
from hlstream.common.timebucket import format_window, parse_interval
from hlstream.rebuild import (
    Change,
    Merge,
    Window,
    aligned_range,
    holes,
    journal_after,
    merge_rows,
    tape_bars,
)
from hlstream.services.writer.dirlock import DATA_LOCK_FILE

STATUS_FRESH_S = 10.0


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


def _writer_running(data_dir: Path) -> bool:
    try:
        fd = os.open(data_dir / DATA_LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _writer_intervals(settings: Settings) -> set[str]:
    """Intervals a running writer may have open: configured here, or in its status file."""
    status = read_status(settings.run_dir, "writer")
    files = {} if status is None else status.files
    return set(settings.intervals) | {info.interval for info in files.values()}


def _coverage_end(settings: Settings, coin: str, running: bool) -> int | None:
    """Up to when the tape of `coin` holds everything: while the pipeline runs, ingest's
    covered_ms; else the newest record (its window may be unfinished, so it is left out)."""
    newest = newest_ts_ms(settings.data_dir, coin)
    status = read_status(settings.run_dir, "ingest") if running else None
    fresh = status is not None and time.time() * 1000 - status.ts_ms < STATUS_FRESH_S * 1000
    if fresh and status is not None and status.feed is not None and status.feed.covered_ms:
        return status.feed.covered_ms
    return newest


def _read_rows(path: Path) -> tuple[list[Row], int]:
    """Rows of an existing CSV (a torn last line is left out); refuses a foreign file."""
    data = path.read_bytes()
    if not data.startswith(HEADER_LINE.encode()):
        raise IntegrityError(f"{path} does not start with {HEADER_LINE.strip()!r}; not touching it")
    body = data[len(HEADER_LINE) :]
    torn = 0 if body.endswith(b"\n") or not body else len(body) - (body.rfind(b"\n") + 1)
    lines = body[: len(body) - torn].decode("utf-8").splitlines()
    return [parse_row(line) for line in lines], torn


def _replace(path: Path, rows: list[Row]) -> None:
    """Write header + rows to a temp file, fsync, rename over `path`, fsync the dir."""
    temp = path.with_name(f".{path.name}.rebuild.tmp")
    with open(temp, "wb") as handle:
        handle.write(HEADER_LINE.encode())
        handle.write("".join(_line(row) for row in rows).encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _line(row: Row) -> str:
    fields = (format_window(row.start_ms), row.open, row.high, row.low, row.close, row.volume)
    return ",".join(fields) + "\n"


def _inexact_note(journal: dict[int, str]) -> str:
    return f"; {len(journal)} rows not exact (hlstream verify lists them)" if journal else ""


def _show(row: Row | None) -> str:
    return "-" if row is None else ",".join((row.open, row.high, row.low, row.close, row.volume))


def _plan(
    settings: Settings, request: Request, coin: str, path: Path, running: bool, live: bool
) -> tuple[Merge, int]:
    """The merged rows for one file, and how many bytes of a torn tail it had."""
    interval_ms = parse_interval(request.interval)
    existing, torn = _read_rows(path) if path.exists() else ([], 0)
    covered_from = coverage_start_ms(settings.data_dir, coin)
    end, start = request.to_ms, request.from_ms
    if end is None:
        end = _coverage_end(settings, coin, running)
        if live and existing and end is not None:  # rows the writer has not written yet
            end = min(end, existing[-1].start_ms + interval_ms)
    if start is None and covered_from is not None:  # the file's range, not older
        start = max(covered_from, existing[0].start_ms) if existing else covered_from
    if start is None or end is None:
        return Merge(existing, []), torn
    from_ms, to_ms = aligned_range(interval_ms, start, end)
    window = Window(request.interval, interval_ms, from_ms, to_ms)
    if to_ms <= from_ms:
        return Merge(existing, []), torn
    before = last_trade_before(settings.data_dir, coin, from_ms)
    seed = None if before is None else format_decimal(Decimal(before.price))
    if seed is None:
        earlier = [row for row in existing if row.start_ms < from_ms]
        seed = earlier[-1].close if earlier else None
    records = read_tape(settings.data_dir, coin, from_ms, to_ms)
    rebuilt = tape_bars(coin, window, records, covered_from, seed)
    if rebuilt.late:
        raise IntegrityError(
            f"tape of {coin} has {rebuilt.late} trades more than a minute out of order"
        )
    return merge_rows(existing, rebuilt, window), torn


def run_rebuild(settings: Settings, request: Request, out: TextIO = sys.stdout) -> int:
    """Rebuild (or check) one file per coin; print a line per file. Exit code."""
    err = sys.stderr
    running = _writer_running(settings.data_dir)
    live = running and request.interval in _writer_intervals(settings)
    if live and not request.check:
        raise ConfigError(
            f"the running writer appends to the {request.interval} files in "
            f"{settings.data_dir}; stop the pipeline first (hlstream stop) or use --check"
        )
    coins = request.coins
    if coins == (ALL_COINS,):
        coins = tuple(tape_coins(settings.data_dir))
    if not coins:
        print(f"hlstream rebuild: no trade tape in {settings.data_dir}", file=err)
        return 1
    differing = 0
    progress = tqdm(coins, desc="rebuild", unit="coin", file=err, ascii=" #", leave=False)
    for coin in progress:
        path = settings.data_dir / csv_filename(coin, request.interval)
        try:
            merge, torn = _plan(settings, request, coin, path, running, live)
        except (HlstreamError, OSError, ValueError) as exc:
            print(f"hlstream rebuild: error: {coin}: {exc}", file=err)
            return 1
        differ = merge.differing()
        differing += len(differ)
        summary = (
            f"{coin} {request.interval}: {len(merge.changes)} windows from the tape, "
            f"{merge.count(Change.SAME)} same, {merge.count(Change.DIFFERS)} differ, "
            f"{merge.count(Change.MISSING)} missing, {merge.count(Change.KEPT)} kept "
            f"(tape not whole there)"
        )
        if request.check:
            for item in differ:
                print(
                    f"{path.name} {format_window(item.start_ms)} {item.change}: "
                    f"file {_show(item.old)} tape {_show(item.new)}",
                    file=out,
                )
            print(summary, file=out)
            continue
        for before, after in holes(merge.rows, parse_interval(request.interval)):
            print(
                f"hlstream rebuild: {path.name}: no row between {format_window(before)} and "
                f"{format_window(after)} (the tape does not reach there)",
                file=err,
            )
        if not merge.rows:
            print(f"{summary}; nothing to write", file=out)
            continue
        journal = inexact_io.read_journal(path)
        exact_now = journal_after(merge, journal)
        if not differ and not torn and path.exists():
            if exact_now != journal:
                inexact_io.rewrite(path, exact_now)
            print(f"{summary}; unchanged{_inexact_note(exact_now)}", file=out)
            continue
        with open(path, "ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if exact_now != journal:
                inexact_io.rewrite(path, {**journal, **exact_now})  # entries first, as the writer
            _replace(path, merge.rows)
            if exact_now != journal:
                inexact_io.rewrite(path, exact_now)
        print(f"{summary}; written {path}{_inexact_note(exact_now)}", file=out)
    progress.close()
    return 1 if request.check and differing else 0
