"""The relay's status line and gauges read its heartbeat file."""

from __future__ import annotations

import msgspec

from hlstream.health_text import relay_line
from hlstream.metrics_io import relay_gauges
from hlstream.services.relay.core import RelayStatus, SinkStatus
from hlstream.services.relay.files_io import read_relay_status, status_path


def _status(ts_ms: int) -> RelayStatus:
    return RelayStatus(
        "relay", ts_ms, 1, SinkStatus(True, True), SinkStatus(True, False, "refused", 5),
        0.5, 12, 300, 1000, 7, 3, 10, 9, 2,
    )  # fmt: skip


def test_relay_line_shows_sinks_lag_and_duplicates(tmp_path):
    assert relay_line(read_relay_status(tmp_path), 0) is None
    status_path(tmp_path).write_bytes(msgspec.json.encode(_status(1_000)))
    line = relay_line(read_relay_status(tmp_path), 2_000)
    assert line is not None
    assert "nats connected" in line and "postgres DOWN (refused)" in line
    assert "lag 0.5 s / 12 trades" in line and "duplicates 7" in line
    assert "STALE" in (relay_line(read_relay_status(tmp_path), 60_000) or "")


def test_relay_gauges_name_every_counter(tmp_path):
    status_path(tmp_path).write_bytes(msgspec.json.encode(_status(1_000)))
    gauges = relay_gauges(read_relay_status(tmp_path))
    assert gauges["hlstream_relay_duplicates_total"] == 7
    assert gauges["hlstream_relay_postgres_connected"] == 0
    assert relay_gauges(None) == {}


def test_the_exporter_serves_the_relay_gauges_beside_the_pipelines(tmp_path):
    from hlstream.common.config import Settings, validate
    from hlstream.metrics_io import HealthCollector

    settings = validate(Settings(run_dir=tmp_path / "run", data_dir=tmp_path / "data"))
    settings.run_dir.mkdir()
    status_path(settings.run_dir).write_bytes(msgspec.json.encode(_status(1_000)))

    names = {family.name: family for family in HealthCollector(settings).collect()}

    assert "hlstream_healthy" in names
    assert names["hlstream_relay_lag_seconds"].samples[0].value == 0.5
