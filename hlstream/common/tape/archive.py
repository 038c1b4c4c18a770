"""Which tape files a compaction touches, from a coin folder's names. Pure.

A day is *closed* once it is older than yesterday: yesterday's segment still takes late
trades after midnight (the margin `prune` keeps too), an older one never does. A closed day's
CSV segment is compacted to `{day}.parquet`; a day with both files is one whose compaction was
interrupted after the rename, so its Parquet file is verified against the CSV again before the
CSV goes. Temp files a crash left behind (`write_atomic`'s `.{name}.{pid}.tmp`) are removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from hlstream.common.tape.format import (
    ARCHIVE_SUFFIX,
    SEGMENT_SUFFIX,
    is_segment_name,
    shift_day,
)

_TEMP_RE = re.compile(r"\.[0-9]{4}-[0-9]{2}-[0-9]{2}\.parquet\.[0-9]+\.tmp\Z")


class DayPlan(NamedTuple):
    day: str
    archived: bool  # a Parquet file is there already: verify it rather than write it


class CompactionPlan(NamedTuple):
    days: list[DayPlan]
    leftovers: list[str]  # temp files to remove first


def is_closed(day: str, today: str) -> bool:
    """True when `day` can no longer receive trades: it is older than yesterday."""
    return day < shift_day(today, -1)


def plan_compaction(names: Iterable[str], today: str) -> CompactionPlan:
    """What to do in one coin folder holding files `names`, on UTC day `today`."""
    names = set(names)
    days = []
    for name in sorted(names):
        if is_segment_name(name):
            day = name[: -len(SEGMENT_SUFFIX)]
            if is_closed(day, today):
                days.append(DayPlan(day, f"{day}{ARCHIVE_SUFFIX}" in names))
    leftovers = sorted(name for name in names if _TEMP_RE.match(name))
    return CompactionPlan(days, leftovers)
