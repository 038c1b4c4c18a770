"""Rate-limited logging: a failure that repeats while the network is down is said a few times
per window, then counted, and the next line says how many were left out."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hlstream.common.log import REPEAT_BURST, REPEAT_EVERY_S, EventLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if getattr(r, "event", "") == event]


def test_a_repeated_error_is_logged_a_burst_per_window_then_counted(caplog) -> None:
    clock = FakeClock()
    log = EventLog("writer", clock=clock)
    with caplog.at_level(logging.INFO, logger="hlstream"):
        shown = [log.repeated(logging.WARNING, "rest_retry", "unreachable") for _ in range(10)]
        clock.now += REPEAT_EVERY_S
        log.repeated(logging.WARNING, "rest_retry", "unreachable", attempt=1)

    assert shown == [True] * REPEAT_BURST + [False] * (10 - REPEAT_BURST)
    lines = logged(caplog, "rest_retry")
    assert len(lines) == REPEAT_BURST + 1
    assert lines[-1]["suppressed"] == 10 - REPEAT_BURST
    assert "suppressed" not in lines[0]


def test_each_distinct_error_has_its_own_limit(caplog) -> None:
    log = EventLog("writer", clock=FakeClock())
    with caplog.at_level(logging.INFO, logger="hlstream"):
        for _ in range(5):
            log.repeated(logging.WARNING, "rest_retry", "unreachable")
        log.repeated(logging.WARNING, "rest_retry", "HTTP 429")
        log.repeated(logging.WARNING, "rest_retry", "HTTP 500")

    errors = [fields["error"] for fields in logged(caplog, "rest_retry")]
    assert errors == ["unreachable"] * REPEAT_BURST + ["HTTP 429", "HTTP 500"]
