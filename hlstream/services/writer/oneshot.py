"""`hlstream backfill`: the writer's startup backfill (`Store.backfill`) once per coin x
interval file, with a progress bar on stderr. Safe while the pipeline runs (no run-dir lock;
appends re-read the last row under flock); seconds intervals have no REST candles."""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from typing import TextIO

from tqdm import tqdm

from hlstream.common.backoff import WeightBudget
from hlstream.common.config import Settings, prepare_dirs
from hlstream.common.errors import HlstreamError
from hlstream.common.filenames import csv_filename
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog, setup_logging
from hlstream.common.rest_io import InfoClient
from hlstream.common.timebucket import has_rest_candles
from hlstream.services.writer.candles_io import REST_WEIGHT_PER_MINUTE
from hlstream.services.writer.store import Store


def run(settings: Settings, stop: StopFlag, err: TextIO) -> tuple[int, int, list[str]]:
    """Backfill every REST file; return (files done, rows written, failures)."""
    rest_intervals = [i for i in settings.intervals if has_rest_candles(i)]
    skipped = [i for i in settings.intervals if i not in rest_intervals]
    if skipped:
        err.write(f"backfill: skipping {','.join(skipped)}: the exchange has no candles for them\n")
    jobs = list(itertools.product(settings.coins, rest_intervals))
    log = EventLog("backfill")
    info = InfoClient(settings.info_url, timeout_s=10.0)
    budget = WeightBudget(REST_WEIGHT_PER_MINUTE)  # one budget across all files, as the writer
    bar_format = "{desc} [{bar:30}] {n_fmt}/{total_fmt} files  {postfix}"
    progress = tqdm(jobs, "backfill", unit="file", file=err, ascii=" #", bar_format=bar_format)
    failures: list[str] = []
    rows = 0
    try:
        progress.set_postfix_str("starting")
        for coin, interval in jobs:
            if stop.is_set():
                failures.append("interrupted")
                break
            name = csv_filename(coin, interval)
            progress.set_postfix_str(f"{name} ...")
            one = replace(settings, coins=(coin,), intervals=(interval,))
            store = Store(one, stop, log, info=info)
            store.rest.budget = budget
            try:
                store.open_files()
                store.backfill()
            except HlstreamError as exc:
                failures.append(f"{name}: {exc}")
            finally:
                store.close()
            counters = store.counters
            if store.refused:
                failures.extend(f"{name}: {error}" for error in store.refused.values())
            elif counters.rest_errors and not stop.is_set():
                failures.append(f"{name}: REST failed (see log above)")
            rows += counters.rows_written
            progress.set_postfix_str(f"{name} +{counters.rows_written} rows", refresh=False)
            progress.update(1)
    finally:
        progress.close()
        info.close()
    return progress.n, rows, failures


def backfill_command(settings: Settings) -> int:
    """`hlstream backfill`: backfill, print a summary; return the exit code (0, 1)."""
    prepare_dirs(settings)
    setup_logging("WARNING", settings.log_json)
    stop = StopFlag().install()
    done, rows, failures = run(settings, stop, sys.stderr)
    for failure in failures:
        print(f"backfill: FAILED {failure}", file=sys.stderr)
    print(
        f"backfill: {done} file(s), {rows} row(s) written to {settings.data_dir}"
        + (f", {len(failures)} failure(s)" if failures else "")
    )
    return 1 if failures else 0
