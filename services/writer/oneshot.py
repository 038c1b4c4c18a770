"""`python -m services.writer backfill`: one-shot REST backfill with a progress bar on stderr.

Runs the writer's own startup backfill (`Writer.open_files` + `Writer.backfill`) once per
coin x interval file, so the planning, REST retries, rate limiting and carry-forward are
exactly the running writer's. Safe while the pipeline runs: it never takes the writer's
run-dir lock, and every append re-reads the file's last row under `flock(LOCK_EX)` and drops
rows already there, so whichever process writes a window first wins and the other skips it.
Idempotent: a file is only ever extended from its last row, up to the last window the
exchange has closed. Seconds intervals have no REST candles and are skipped.

Exit codes: 0 every file done, 1 a file failed (REST error, refused file), 78 config error.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TextIO

from common.backoff import WeightBudget
from common.config import Settings, add_config_flags, load_settings, prepare_dirs
from common.errors import EXIT_CONFIG, ConfigError, HlstreamError
from common.filenames import csv_filename
from common.lifecycle_io import StopFlag
from common.log import event_log, setup_logging
from common.rest_io import InfoClient
from common.timebucket import has_rest_candles
from services.writer.shell import REST_WEIGHT_PER_MINUTE, Writer

BAR_WIDTH = 30


def render_progress(done: int, total: int, label: str, width: int = BAR_WIDTH) -> str:
    """`backfill [#########.....................]  3/10 files  label`."""
    filled = width if total == 0 else width * done // total
    return f"backfill [{'#' * filled}{'.' * (width - filled)}] {done:>3}/{total} files  {label}"


class Progress:
    """A one-line bar redrawn in place on a terminal; one line per update otherwise."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.done = 0

    def show(self, label: str) -> None:
        line = render_progress(self.done, self.total, label)
        if self.tty:
            self.out.write("\r\x1b[K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def step(self, label: str) -> None:
        self.done += 1
        self.show(label)

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def run(settings: Settings, stop: StopFlag, err: TextIO) -> tuple[int, int, list[str]]:
    """Backfill every REST file; return (files done, rows written, failures)."""
    log = event_log("backfill")
    info = InfoClient(settings.info_url, timeout_s=10.0)
    budget = WeightBudget(REST_WEIGHT_PER_MINUTE)  # one budget across all files, as the writer
    jobs = [
        (coin, interval)
        for coin in settings.coins
        for interval in settings.intervals
        if has_rest_candles(interval)
    ]
    skipped = [i for i in settings.intervals if not has_rest_candles(i)]
    if skipped:
        err.write(f"backfill: skipping {','.join(skipped)}: the exchange has no candles for them\n")
    progress = Progress(len(jobs), err)
    failures: list[str] = []
    rows = 0
    done = 0
    try:
        progress.show("starting")
        for coin, interval in jobs:
            if stop.is_set():
                failures.append("interrupted")
                break
            name = csv_filename(coin, interval)
            progress.show(f"{name} ...")
            one = replace(settings, coins=(coin,), intervals=(interval,))
            writer = Writer(one, stop, log, info=info)
            writer.budget = budget
            try:
                writer.open_files()
                writer.backfill()
            except HlstreamError as exc:
                failures.append(f"{name}: {exc}")
            finally:
                for handle in writer.files.values():
                    handle.close()
            counters = writer.counters
            if writer.refused:
                failures.extend(f"{name}: {error}" for error in writer.refused.values())
            elif counters.rest_errors and not stop.is_set():
                failures.append(f"{name}: REST failed (see log above)")
            rows += counters.rows_written
            done += 1
            progress.step(f"{name} +{counters.rows_written} rows")
    finally:
        progress.close()
        info.close()
    return done, rows, failures


def main(argv: list[str] | None = None) -> int:
    """Parse flags, backfill, print a summary; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m services.writer backfill",
        description="one-shot REST backfill of the configured coins x intervals",
    )
    parser.add_argument("--hours", type=float, default=None, help="reach (default backfill_hours)")
    add_config_flags(parser)
    args = parser.parse_args(argv)
    if args.hours is not None:
        args.cfg_backfill_hours = str(args.hours)
    setup_logging("WARNING")
    stop = StopFlag().install()
    try:
        settings = load_settings(args)
        prepare_dirs(settings)
    except ConfigError as exc:
        print(f"hlstream: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging("WARNING", settings.log_json)
    done, rows, failures = run(settings, stop, sys.stderr)
    for failure in failures:
        print(f"backfill: FAILED {failure}", file=sys.stderr)
    print(f"backfill: {done} file(s), {rows} row(s) written to {settings.data_dir}"
          + (f", {len(failures)} failure(s)" if failures else ""))
    return 1 if failures else 0
