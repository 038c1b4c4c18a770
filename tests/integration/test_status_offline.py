"""`hlstream status` of a pipeline with no exchange to reach: unhealthy, naming why.

Ingest and the writer point at a local port nothing listens on (the socket is bound, never
listening, so every connect is refused at once), as with no internet at all. With 2 s limits
status must exit 1 and name each cause on its own line, long before a 1m file could lag.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.support.pipeline import Pipeline
from tests.support.wait import wait_for


@pytest.fixture
def offline(tmp_path) -> Iterator[Pipeline]:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        nowhere = SimpleNamespace(
            ws_url=f"ws://127.0.0.1:{port}/ws", info_url=f"http://127.0.0.1:{port}/info"
        )
        running = Pipeline(
            nowhere,  # type: ignore[arg-type]
            tmp_path,
            coins="BTC",
            intervals="1m",
            health_disconnected_seconds="2",
            health_no_trade_seconds="2",
            health_rest_failing_seconds="2",
            backoff_cap_seconds="1",
        )
        running.start()
        try:
            yield running
        finally:
            code, output = running.stop()
        assert code == 0, output[-3000:]


def _status(pipeline: Pipeline) -> subprocess.CompletedProcess[str]:
    return pipeline.cli("status", timeout_s=30)


def test_status_offline_exits_1_naming_each_cause(offline: Pipeline) -> None:
    def names_the_causes() -> subprocess.CompletedProcess[str] | None:
        result = _status(offline)
        lines = result.stdout.splitlines()
        ingest = any(line.startswith("UNHEALTHY: ingest not connected for") for line in lines)
        writer = any(line.startswith("UNHEALTHY: writer REST failing for") for line in lines)
        return result if ingest and writer else None

    result = wait_for(names_the_causes, 60, "status naming ingest and writer REST")

    assert result.returncode == 1, result.stdout
    assert "(limit 2.0 s)" in result.stdout
    report = json.loads(offline.cli("status", "--json", timeout_s=30).stdout)
    codes = {cause["code"] for cause in report["causes"]}
    assert {"ingest_disconnected", "rest_failing"} <= codes
    assert report["connected"] is False and report["disconnected_s"] > 2
    assert "unreachable" in report["rest"]["writer"]["last_error"]
