"""hlstream/supervise_io.py: the daemon's wait loops sleep through an injected `sleep`."""

from __future__ import annotations

from hlstream.supervise_io import POLL_S, wait_until


def test_wait_until_asks_every_poll_until_ready() -> None:
    answers = iter([False, False, True])
    slept: list[float] = []
    assert wait_until(lambda: next(answers), 60.0, slept.append)
    assert slept == [POLL_S, POLL_S]


def test_wait_until_gives_up_once_the_timeout_has_passed() -> None:
    slept: list[float] = []
    assert not wait_until(lambda: False, -1.0, slept.append)
    assert slept == []
