"""`hlstream repair`: apply the pending revisions (`{file}.revisions`) of the configured files,
atomically under each file's lock (common/revisions_io.py `apply_file`); never under a running
writer. A row matching neither side of its revision is a conflict: left as it is, exit 1.
"""

from __future__ import annotations

import sys
from typing import TextIO

from hlstream.common import revisions_io
from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.errors import ConfigError
from hlstream.common.filenames import csv_filename
from hlstream.common.timebucket import format_window
from hlstream.rebuild_io import writer_intervals
from hlstream.services.writer.dirlock import writer_running
from hlstream.verify import plural


def run_repair(settings: Settings, out: TextIO = sys.stdout) -> int:
    """Repair every configured file with revisions; print a line per file. Exit code."""
    files = (
        [
            (interval, path)
            for interval in settings.intervals
            for path in sorted(settings.data_dir.glob(f"*_{interval}_data.csv"))
        ]
        if settings.coins == (ALL_COINS,)
        else [
            (interval, settings.data_dir / csv_filename(coin, interval))
            for coin in settings.coins
            for interval in settings.intervals
        ]
    )
    with_revisions = [(i, p) for i, p in files if revisions_io.revisions_path(p).exists()]
    if writer_running(settings.data_dir):
        live = writer_intervals(settings)
        if any(interval in live for interval, _ in with_revisions):
            raise ConfigError(
                f"the running writer appends to the files in {settings.data_dir}; "
                "stop the pipeline first (hlstream stop)"
            )
    conflicts = 0
    for _, path in with_revisions:
        if not path.exists():
            continue
        result = revisions_io.apply_file(path)
        if result is None:
            continue
        conflicts += len(result.conflicts)
        for revision in result.conflicts:
            out.write(
                f"{path}: conflict: the row at {format_window(revision.old.start_ms)} "
                "matches neither side of its revision; left as it is\n"
            )
        out.write(
            f"{path}: {plural(result.applied, 'row')} revised, {result.already} already, "
            f"{len(result.conflicts)} conflicts\n"
        )
    if not with_revisions:
        out.write(f"hlstream repair: no revisions in {settings.data_dir}\n")
    return 1 if conflicts else 0
