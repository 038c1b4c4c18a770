"""One table for both sequence trackers: the stages' SeqTracker and the standalone tap.

hlstream.tap may not import hlstream.common (it must run with only pyzmq and msgpack), so it
carries its own copy of the logic; this table keeps the two from drifting. A repeated or
older seq is `stale` and must never report a phantom loss on the next message.
"""

from __future__ import annotations

import pytest

from hlstream.common.sequence import SeqTracker
from hlstream.tap import Tap

# (session, seq) per message on one topic -> expected (event, lost) per message
TABLE = [
    ("first then next", [("a", 1), ("a", 2)], [("first", 0), ("ok", 0)]),
    ("skip two", [("a", 1), ("a", 4)], [("first", 0), ("loss", 2)]),
    ("repeat is stale", [("a", 5), ("a", 5), ("a", 6)], [("first", 0), ("stale", 0), ("ok", 0)]),
    (
        "older is stale, no phantom loss",
        [("a", 5), ("a", 3), ("a", 6)],
        [("first", 0), ("stale", 0), ("ok", 0)],
    ),
    ("restart resets", [("a", 9), ("b", 1), ("b", 2)], [("first", 0), ("restart", 0), ("ok", 0)]),
    (
        "restart then gap",
        [("a", 9), ("b", 1), ("b", 5)],
        [("first", 0), ("restart", 0), ("loss", 3)],
    ),
    ("first seq need not be 1", [("a", 100), ("a", 101)], [("first", 0), ("ok", 0)]),
]


def _tap_without_socket() -> Tap:
    tap = Tap.__new__(Tap)
    tap._last = {}
    tap.lost = 0
    return tap


@pytest.mark.parametrize(("name", "messages", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_seqtracker_and_tap_agree_with_the_table(name, messages, expected):
    assert messages and len(messages) == len(expected)
    tracker, tap = SeqTracker(), _tap_without_socket()
    got_tracker = []
    got_tap = []
    for session, seq in messages:
        event, lost = tracker.observe("trade.BTC|", session, seq)
        got_tracker.append((event.value, lost))
        got_tap.append(tap._sequence("trade.BTC|", session, seq))
    assert got_tracker == expected
    assert got_tap == expected
    assert tracker.lost == tap.lost == sum(lost for _, lost in expected)
