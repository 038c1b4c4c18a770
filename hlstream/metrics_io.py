"""Prometheus exporter: the `hlstream status` figures as metrics on 127.0.0.1:metrics_port.

Every scrape re-reads supervisord and the status files, so the exporter holds no state and
cannot drift from `hlstream status`. Stage counters restart with their stage, so they are
gauges; the venue audit's per-file scores survive writer restarts, so they are counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from hlstream.common.config import Settings
from hlstream.common.lifecycle_io import StopFlag
from hlstream.health import TOTAL_COUNTERS, Report
from hlstream.health_io import gather
from hlstream.services.relay.core import RelayStatus
from hlstream.services.relay.files_io import read_relay_status

METRICS_HOST = "127.0.0.1"
IDLE_WAIT_S = 3600.0  # `hlstream metrics` only waits for a stop signal
_PREFIX = "hlstream_"
_FILE = ("file", "coin", "interval")
_AUDIT = ("coin", "interval")
# counter name (without _total) -> (help, the AuditScore field)
_AUDIT_COUNTERS = {
    "rows_audited": ("rows of the file compared with the venue's candles", "audited"),
    "rows_mismatched": ("audited rows of the file the venue disagrees with", "mismatched"),
}
# name -> (help, label names); `families` adds the counters of COUNTER_SOURCES after these.
_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "healthy": ("1 when `hlstream status` would exit 0", ()),
    "unhealthy_cause": ("problems of each cause (docs/status.md); absent: none", ("cause",)),
    "ingest_disconnected_seconds": (
        "seconds not every ingest link has been up; 0 when connected",
        (),
    ),
    "rest_failing_seconds": (
        "seconds the stage's REST requests have failed with no success; 0 when not failing",
        ("stage",),
    ),
    "supervisord_up": ("1 when supervisord answers on the run dir socket", ()),
    "ingest_connected": ("1 when ingest has a live websocket", ()),
    "ingest_backlog_bytes": (
        "bytes the venue sent that ingest has not handled yet (worst link)",
        (),
    ),
    "stage_running": ("1 when supervisord reports the stage RUNNING", ("stage",)),
    "stage_uptime_seconds": ("seconds since the stage started", ("stage",)),
    "status_age_seconds": ("age of the stage's status file", ("stage",)),
    "last_trade_age_seconds": ("seconds since the coin's last trade", ("coin",)),
    "file_behind_seconds": ("seconds between the end of the file's last row and now", _FILE),
    "file_last_bar_timestamp_seconds": ("window start of the file's last row", _FILE),
    "file_lagging": ("1 when the file is more than 2 intervals + grace behind", _FILE),
    **{
        key: (f"{key.replace('_', ' ')} since the reporting stage started", ())
        for key in TOTAL_COUNTERS
    },
    "malformed_frames": ("malformed frames dropped since the stage started", ("stage",)),
    "audit_pending": ("rows of the file written and waiting for their venue audit", _AUDIT),
}

Samples = Iterable[tuple[tuple[str, ...], float | None]]  # label values, value (None: none)


def _samples(report: Report) -> dict[str, Samples]:
    """Each gauge's samples, by name (booleans count as 1 and 0)."""
    stages, counters = report.stages.items(), report.counters
    files = [((name, f.coin, f.interval), f) for name, f in report.files.items()]  # _FILE labels
    by_code = sorted(Counter(cause.code for cause in report.causes).items())
    return {
        "healthy": [((), report.healthy)],
        "unhealthy_cause": [((code,), count) for code, count in by_code],
        "ingest_disconnected_seconds": [((), report.disconnected_s or 0)],
        "rest_failing_seconds": [
            ((name,), rest.failing_s or 0) for name, rest in report.rest.items()
        ],
        "supervisord_up": [((), report.supervisord)],
        "ingest_connected": [((), bool(report.connected))],
        "ingest_backlog_bytes": [((), report.backlog_bytes or 0)],
        "stage_running": [((name,), stage.state == "RUNNING") for name, stage in stages],
        "stage_uptime_seconds": [((name,), stage.uptime_s) for name, stage in stages],
        "status_age_seconds": [((name,), stage.status_age_s) for name, stage in stages],
        "last_trade_age_seconds": [
            ((coin,), info.last_trade_age_s) for coin, info in report.coins.items()
        ],
        "file_behind_seconds": [(labels, f.behind_s) for labels, f in files],
        "file_last_bar_timestamp_seconds": [
            (labels, None if f.last_start_ms is None else f.last_start_ms / 1000)
            for labels, f in files
        ],
        "file_lagging": [(labels, f.lagging) for labels, f in files],
        **{key: [((), getattr(counters, key))] for key in TOTAL_COUNTERS},
        "malformed_frames": [((stage,), value) for stage, value in counters.malformed.items()],
        "audit_pending": [((f.coin, f.interval), f.audit.pending) for _, f in files if f.audit],
    }


def families(report: Report) -> list[GaugeMetricFamily | CounterMetricFamily]:
    """The metric families of one health report."""
    samples = _samples(report)
    out: list[GaugeMetricFamily | CounterMetricFamily] = []
    for name, (doc, labels) in _GAUGES.items():
        family = GaugeMetricFamily(_PREFIX + name, doc, labels=list(labels))
        for values, value in samples[name]:
            if value is not None:
                family.add_metric(list(values), float(value))
        out.append(family)
    for name, (doc, field) in _AUDIT_COUNTERS.items():
        counter = CounterMetricFamily(_PREFIX + name, doc, labels=list(_AUDIT))
        for file in report.files.values():
            if file.audit is not None:
                counter.add_metric([file.coin, file.interval], getattr(file.audit, field))
        out.append(counter)
    return out


def relay_gauges(status: RelayStatus | None) -> dict[str, float]:
    """Gauge name -> value for `/metrics` ({} when no relay has run)."""
    if status is None:
        return {}
    return {
        "hlstream_relay_nats_connected": float(status.nats.connected),
        "hlstream_relay_postgres_connected": float(status.postgres.connected),
        "hlstream_relay_lag_seconds": status.lag_s,
        "hlstream_relay_lag_trades": float(status.lag_trades),
        "hlstream_relay_lag_bytes": float(status.lag_bytes),
        "hlstream_relay_published_total": float(status.published),
        "hlstream_relay_duplicates_total": float(status.duplicates),
        "hlstream_relay_skipped_total": float(status.skipped),
        "hlstream_relay_bars_published_total": float(status.bars_published),
        "hlstream_relay_bars_upserted_total": float(status.bars_upserted),
        "hlstream_relay_errors_total": float(status.errors),
    }


class HealthCollector(Collector):
    """Builds every metric at scrape time from a fresh health report."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from families(gather(self.settings))
        relay = relay_gauges(read_relay_status(self.settings.run_dir))
        for name, value in relay.items():
            yield GaugeMetricFamily(name, "the relay stage (docs/scale-out.md)", value=value)


def start_exporter(settings: Settings) -> WSGIServer:
    """Serve /metrics on 127.0.0.1:metrics_port in a daemon thread; return the server."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(settings))
    server, _thread = start_http_server(settings.metrics_port, METRICS_HOST, registry)
    return server


def serve_forever(server: WSGIServer) -> int:
    """`hlstream metrics`: run the started exporter until Ctrl-C/SIGTERM."""
    done = StopFlag().install()
    while not done.wait(IDLE_WAIT_S):
        pass
    server.shutdown()
    return 0
