"""The relay's bar files (relay/bars.py, relay/bars_io.py): rows, journal flips and
`.revisions` lines to bars with deterministic revision numbers, and a file rewritten by
`hlstream repair` (or a rebuild) sending only the windows that changed."""

from __future__ import annotations

import os

import msgspec

from hlstream.common import inexact_io, revisions_io
from hlstream.common.csvrow import HEADER_LINE, Row
from hlstream.common.durable import write_atomic
from hlstream.common.revisions import VENUE_MISMATCH, Revision
from hlstream.common.revisions_io import apply_file
from hlstream.common.timebucket import format_window
from hlstream.services.relay.bars import same_values
from hlstream.services.relay.bars_io import PINS_DIR, new_bars
from hlstream.services.relay.core import FileProgress, RelayProgress

T0 = 1_704_067_200_000  # 2024-01-01 00:00:00
ROWS = [Row(T0 + i * 60_000, "10", "12", "9", "11", f"1.{i}") for i in range(4)]


def _line(row: Row) -> str:
    values = (row.open, row.high, row.low, row.close, row.volume)
    return ",".join((format_window(row.start_ms), *values)) + "\n"


def _write(path, rows) -> None:
    write_atomic(path, (HEADER_LINE + "".join(map(_line, rows))).encode())


def _append(path, rows) -> None:
    with path.open("a") as handle:
        handle.write("".join(map(_line, rows)))


def _revise(path, row: Row, **new: str) -> Row:
    revised = Row(**{**{f: getattr(row, f) for f in Row.__slots__}, **new})
    revisions_io.append(path, [Revision(row, revised, VENUE_MISMATCH, T0 + 3_600_000)])
    return revised


def _step(path, state: FileProgress):
    found = new_bars(path, "BTC", "1m", state, path.parent / PINS_DIR)
    assert found is not None
    bars, new = found
    # The state round-trips through the progress file unchanged.
    saved = msgspec.json.encode(RelayProgress(nats_bars={"f": new}))
    assert msgspec.json.decode(saved, type=RelayProgress).nats_bars["f"] == new
    return bars, new


def _ids(bars) -> list[str]:
    return [f"{b.start_ms}:{b.revision}" for b in bars]


def test_a_revision_is_sent_once_as_the_venues_exact_candle_with_the_next_revision(tmp_path):
    path = tmp_path / "BTC_1m_data.csv"
    _write(path, ROWS[:3])
    bars, state = _step(path, FileProgress())
    assert _ids(bars) == [f"{r.start_ms}:0" for r in ROWS[:3]]
    assert all(b.exact for b in bars)
    _revise(path, ROWS[1], close="11.5", volume="2.25")
    _append(path, ROWS[3:])
    bars, after = _step(path, state)
    assert _ids(bars) == [f"{ROWS[3].start_ms}:0", f"{ROWS[1].start_ms}:1"]
    revised = bars[1]
    assert (revised.close, revised.volume, revised.exact) == ("11.5", "2.25", True)
    # A crash before the progress was saved: the same bars again, same revision numbers.
    again, same = _step(path, state)
    assert again == bars and same == after
    assert _step(path, after)[0] == [], "a sent revision is never sent twice"


def test_a_revision_equal_to_what_was_sent_sends_nothing(tmp_path):
    path = tmp_path / "BTC_1m_data.csv"
    _write(path, ROWS)
    _, state = _step(path, FileProgress())
    _revise(path, ROWS[0], volume="1.00")  # 1.0 == 1.00: already right
    bars, state = _step(path, state)
    assert bars == [] and state.revisions_offset > 0


def test_a_journal_entry_after_a_revision_resends_the_revised_values_inexact(tmp_path):
    path = tmp_path / "BTC_1m_data.csv"
    _write(path, ROWS)
    _, state = _step(path, FileProgress())
    _revise(path, ROWS[2], high="13")
    _, state = _step(path, state)
    inexact_io.record(path, [(ROWS[2].start_ms, inexact_io.Reason.GAP_AFTER_CLOSE)])
    bars, state = _step(path, state)
    assert [(b.high, b.exact, b.revision) for b in bars] == [("13", False, 2)]
    inexact_io.record(path, [(ROWS[2].start_ms, inexact_io.Reason.PARTIAL)])
    assert _step(path, state)[0] == [], "a window already sent inexact is not sent again"


def test_repair_rewriting_the_file_sends_nothing_more(tmp_path):
    path = tmp_path / "BTC_1m_data.csv"
    _write(path, ROWS)
    inexact_io.record(path, [(ROWS[1].start_ms, inexact_io.Reason.GAP_AFTER_CLOSE)])
    _, state = _step(path, FileProgress())
    _revise(path, ROWS[1], low="8.5")
    _revise(path, ROWS[3], close="10.5")
    bars, state = _step(path, state)
    assert _ids(bars) == [f"{ROWS[1].start_ms}:1", f"{ROWS[3].start_ms}:1"]
    inode = os.stat(path).st_ino
    result = apply_file(path)
    assert result is not None and result.applied == 2
    assert os.stat(path).st_ino != inode and inexact_io.read_journal(path) == {}
    bars, state = _step(path, state)
    assert bars == [], "repair applied what the sinks already have"
    assert state.inode == os.stat(path).st_ino and state.revised == {}
    _append(path, [Row(T0 + 600_000, "1", "1", "1", "1", "0.0")])
    assert _ids(_step(path, state)[0]) == [f"{T0 + 600_000}:0"]


def test_a_rewritten_file_sends_only_the_windows_that_changed(tmp_path):
    path = tmp_path / "BTC_1m_data.csv"
    _write(path, ROWS)
    inexact_io.record(path, [(ROWS[0].start_ms, inexact_io.Reason.PARTIAL)])
    _, state = _step(path, FileProgress())
    changed = Row(ROWS[2].start_ms, "10", "12", "9", "11.25", "1.2")
    _write(path, [ROWS[0], ROWS[1], changed, ROWS[3]])
    inexact_io.rewrite(path, {})  # the rebuilt row 0 is now exact
    bars, state = _step(path, state)
    assert [(b.start_ms, b.close, b.exact, b.revision) for b in bars] == [
        (ROWS[0].start_ms, "11", True, 1),
        (ROWS[2].start_ms, "11.25", True, 1),
    ]
    assert _step(path, state)[0] == []


def test_without_a_pin_a_replaced_file_is_resent_whole_one_generation_higher(tmp_path):
    path = tmp_path / "BTC_1m_data.csv"
    (tmp_path / PINS_DIR).write_text("not a directory: no link can be made")
    _write(path, ROWS)
    _, state = _step(path, FileProgress())
    _write(path, ROWS)
    bars, state = _step(path, state)
    assert _ids(bars) == [f"{r.start_ms}:1" for r in ROWS]


def test_values_compare_as_decimals():
    assert same_values(("1.50", "2", "0", "1", "0.0"), ("1.5", "2.0", "0.0", "1", "0"))
    assert not same_values(("1.5", "2", "0", "1", "0"), ("1.5", "2", "0", "1", "0.00000001"))
