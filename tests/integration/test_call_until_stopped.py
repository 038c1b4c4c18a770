"""A blocking call in a worker thread: its result or its exception, or StopRequestedError as
soon as the stop flag is set."""

from __future__ import annotations

import threading

import pytest

from hlstream.common.lifecycle_io import StopFlag, StopRequestedError, call_until_stopped


def test_the_call_result_and_exception_come_back() -> None:
    stop = StopFlag()
    assert call_until_stopped(stop, lambda: 42) == 42
    with pytest.raises(TimeoutError, match="slow"):
        call_until_stopped(stop, lambda: (_ for _ in ()).throw(TimeoutError("slow")))


def test_a_stop_abandons_a_call_that_never_returns() -> None:
    stop, never = StopFlag(), threading.Event()
    stop.set()
    with pytest.raises(StopRequestedError):
        call_until_stopped(stop, never.wait)
    never.set()
