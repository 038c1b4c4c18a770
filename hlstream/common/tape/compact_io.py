"""Compaction: each closed tape day's CSV segment becomes `{day}.parquet` (tape/archive_io.py).

Safe to stop at any point, by a crash too: the Parquet file appears whole or not at all
(temp, fsync, rename), and the CSV is removed only after the file on disk has been read back
and its records rendered to the CSV's exact bytes (count, length and SHA-256 equal). A day
left with both files is verified again on the next run (rewritten if the check fails); temp
files are removed. A CSV written to in the last hour is left for later (`QUIET_S`). One
compactor at a time (a lock file beside the tape folder). A torn last line
of the CSV (a crash mid-append, which every reader ignores) is not carried over.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hlstream.common.durable import fsync_dir, hold_lock
from hlstream.common.errors import IntegrityError
from hlstream.common.log import EventLog
from hlstream.common.tape.archive import CompactionPlan, plan_compaction
from hlstream.common.tape.archive_io import (
    Fingerprint,
    archive_fingerprint,
    encode_archive,
    encode_csv,
    rendered_fingerprint,
    write_archive,
)
from hlstream.common.tape.format import (
    SEGMENT_SUFFIX,
    TAPE_DIR,
    Record,
    archive_path,
    header,
    header_users,
    segment_path,
)
from hlstream.common.tape.readers_io import decode_line, folder_coin

QUIET_S = 3_600.0  # a closed day's CSV is left alone until this long after its last write
LOCK_NAME = "tape-compact.lock"  # beside writer_io's tape.lock, outside the coin folders


@dataclass(frozen=True, slots=True)
class Compacted:
    coin: str
    day: str
    records: int
    csv_bytes: int
    parquet_bytes: int
    torn_bytes: int  # an unfinished last line dropped


def _read_whole(path: Path) -> tuple[bytes, Fingerprint, int]:
    """A segment's whole lines, their fingerprint, and the bytes of a torn last line."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end and header_users(data) is None:
        raise IntegrityError(f"{path} does not start with the tape header; refusing to compact")
    whole = data[:end]
    records = max(whole.count(b"\n") - 1, 0)
    return (
        whole,
        Fingerprint(records, len(whole), hashlib.sha256(whole).hexdigest()),
        len(data) - end,
    )


def _parse(whole: bytes, path: Path, coin: str, users: bool) -> list[Record]:
    """Each line parsed as every reader does; IntegrityError naming the first corrupt one."""
    records = []
    offset = len(header(users))
    for raw in whole[offset:].splitlines(keepends=True):
        records.append(decode_line(raw, path, offset, coin, users))
        offset += len(raw)
    return records


def _verified(path: Path, coin: str, expected: Fingerprint) -> bool:
    try:
        return archive_fingerprint(path) == expected == rendered_fingerprint(path, coin)
    except IntegrityError:
        return False


def _write_verified(
    path: Path, coin: str, expected: Fingerprint, encode: Callable[[], bytes]
) -> bool:
    try:
        write_archive(path, encode())
    except IntegrityError:
        return False
    return _verified(path, coin, expected)


def compact_day(data_dir: Path | str, coin: str, day: str) -> Compacted:
    """Compact the CSV segment of `coin` on `day` (a closed day: the caller's to check).

    polars parses the CSV (fast); should its file not render back to the CSV's bytes, the
    lines are parsed one by one as the readers do, which names a corrupt line."""
    csv_path, parquet = segment_path(data_dir, coin, day), archive_path(data_dir, coin, day)
    whole, expected, torn = _read_whole(csv_path)
    if expected.csv_bytes and not (parquet.exists() and _verified(parquet, coin, expected)):
        fast = _write_verified(parquet, coin, expected, lambda: encode_csv(whole, expected))
        if not fast:
            users = header_users(whole) is True
            records = _parse(whole, csv_path, coin, users)
            if not _write_verified(
                parquet, coin, expected, lambda: encode_archive(records, expected, users)
            ):
                parquet.unlink(missing_ok=True)
                raise IntegrityError(f"{parquet} does not read back as {csv_path}; kept the CSV")
    if csv_path.stat().st_size != expected.csv_bytes + torn:
        raise IntegrityError(f"{csv_path} grew while it was compacted; kept it")
    csv_path.unlink()
    fsync_dir(csv_path.parent)
    size = parquet.stat().st_size if expected.csv_bytes else 0
    return Compacted(coin, day, expected.records, expected.csv_bytes, size, torn)


def _plans(root: Path, today: str) -> list[tuple[Path, CompactionPlan]]:
    """Each coin folder's plan, without the days whose CSV was written to in the last
    `QUIET_S`: a closed day takes no trades, and one that still does (a feed replaying old
    trades, a skewed clock) is left to the writer rather than raced."""
    if not root.is_dir():
        return []
    out = []
    quiet_since = time.time() - QUIET_S
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        plan = plan_compaction(os.listdir(folder), today)
        days = [
            step
            for step in plan.days
            if _quiet(folder / f"{step.day}{SEGMENT_SUFFIX}", quiet_since)
        ]
        out.append((folder, plan._replace(days=days)))
    return out


def _quiet(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime <= since
    except FileNotFoundError:  # pruned meanwhile
        return False


def has_work(data_dir: Path | str, today: str) -> bool:
    """True if some coin folder holds a closed, quiet CSV day or a temp file to remove."""
    plans = _plans(Path(data_dir) / TAPE_DIR, today)
    return any(plan.days or plan.leftovers for _, plan in plans)


@dataclass(slots=True)
class CompactReport:
    done: list[Compacted] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per day kept as CSV


def compact_closed(data_dir: Path | str, today: str, log: EventLog) -> CompactReport:
    """Compact every closed day of every coin (see tape/archive.py); a day that fails is
    logged, reported and kept as CSV. IntegrityError if another compactor holds the lock."""
    report = CompactReport()
    if not (Path(data_dir) / TAPE_DIR).is_dir():
        return report
    lock = hold_lock(Path(data_dir) / LOCK_NAME, f"pid {os.getpid()}", "a compaction is running")
    try:
        for folder, plan in _plans(Path(data_dir) / TAPE_DIR, today):
            for name in plan.leftovers:
                (folder / name).unlink(missing_ok=True)
            coin = folder_coin(folder) if plan.days else None
            for step in plan.days:
                if coin is None:
                    break
                try:
                    report.done.append(compact_day(data_dir, coin, step.day))
                except (IntegrityError, OSError) as exc:
                    log.warning("tape_compact_failed", coin=coin, day=step.day, error=str(exc))
                    report.failed.append(f"{coin} {step.day}: {exc}")
    finally:
        os.close(lock)
    if report.done:
        log.info("tape_compacted", days=len(report.done), failed=len(report.failed))
    return report
