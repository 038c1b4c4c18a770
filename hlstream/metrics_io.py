"""Prometheus exporter: serves the `hlstream status` figures as gauges on 127.0.0.1:PORT.

`hlstream_healthy` is the verdict and `hlstream_unhealthy_cause{cause}` counts each cause's
problems by code (docs/status.md), so an alert can name why.

Off by default (`metrics_port = 0`). `hlstream run` starts it in its own process when the
port is set; `hlstream metrics` runs it alone (e.g. next to `hlstream start`). Every scrape
re-reads supervisord's process table and the status files, so the exporter holds no state
and cannot drift from `hlstream status`. Counters from status files restart from zero when
their stage restarts, so they are exported as gauges.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from hlstream.common.config import Settings
from hlstream.common.lifecycle_io import StopFlag
from hlstream.health_io import gather

METRICS_HOST = "127.0.0.1"
_PREFIX = "hlstream_"


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(_PREFIX + name, doc, labels=labels or [])


def families(report: dict[str, Any]) -> list[GaugeMetricFamily]:
    """The metric families of one health report."""
    healthy = _gauge("healthy", "1 when `hlstream status` would exit 0")
    healthy.add_metric([], 1.0 if report["healthy"] else 0.0)
    causes = _gauge(
        "unhealthy_cause", "problems of each cause (docs/status.md); absent: none", ["cause"]
    )
    by_code: dict[str, int] = {}
    for cause in report["causes"]:
        by_code[cause["code"]] = by_code.get(cause["code"], 0) + 1
    for code, count in sorted(by_code.items()):
        causes.add_metric([code], float(count))
    disconnected = _gauge(
        "ingest_disconnected_seconds", "seconds not every ingest link has been up; 0 when connected"
    )
    disconnected.add_metric([], float(report["disconnected_s"] or 0))
    rest_failing = _gauge(
        "rest_failing_seconds",
        "seconds the stage's REST requests have failed with no success; 0 when not failing",
        ["stage"],
    )
    for stage, rest in report["rest"].items():
        rest_failing.add_metric([stage], float(rest["failing_s"] or 0))
    supervisord = _gauge("supervisord_up", "1 when supervisord answers on the run dir socket")
    supervisord.add_metric([], 1.0 if report["supervisord"] else 0.0)
    connected = _gauge("ingest_connected", "1 when ingest has a live websocket")
    connected.add_metric([], 1.0 if report["connected"] else 0.0)
    backlog = _gauge(
        "ingest_backlog_bytes", "bytes the venue sent that ingest has not handled yet (worst link)"
    )
    backlog.add_metric([], float(report.get("backlog_bytes") or 0))
    running = _gauge("stage_running", "1 when supervisord reports the stage RUNNING", ["stage"])
    uptime = _gauge("stage_uptime_seconds", "seconds since the stage started", ["stage"])
    status_age = _gauge("status_age_seconds", "age of the stage's status file", ["stage"])
    for name, stage in report["stages"].items():
        running.add_metric([name], 1.0 if stage["state"] == "RUNNING" else 0.0)
        if stage["uptime_s"] is not None:
            uptime.add_metric([name], float(stage["uptime_s"]))
        if stage["status_age_s"] is not None:
            status_age.add_metric([name], float(stage["status_age_s"]))
    trade_age = _gauge("last_trade_age_seconds", "seconds since the coin's last trade", ["coin"])
    for coin, info in report["coins"].items():
        if info["last_trade_age_s"] is not None:
            trade_age.add_metric([coin], float(info["last_trade_age_s"]))
    behind = _gauge(
        "file_behind_seconds",
        "seconds between the end of the file's last row and now",
        ["file", "coin", "interval"],
    )
    last_bar = _gauge(
        "file_last_bar_timestamp_seconds",
        "window start of the file's last row",
        ["file", "coin", "interval"],
    )
    lagging = _gauge(
        "file_lagging",
        "1 when the file is more than 2 intervals + grace behind",
        ["file", "coin", "interval"],
    )
    for name, info in report["files"].items():
        labels = [name, str(info["coin"]), str(info["interval"])]
        lagging.add_metric(labels, 1.0 if info["lagging"] else 0.0)
        if info["behind_s"] is not None:
            behind.add_metric(labels, float(info["behind_s"]))
        if info["last_start_ms"] is not None:
            last_bar.add_metric(labels, info["last_start_ms"] / 1000)
    out = [
        healthy,
        causes,
        disconnected,
        rest_failing,
        supervisord,
        connected,
        backlog,
        running,
        uptime,
        status_age,
        trade_age,
        behind,
        last_bar,
        lagging,
    ]
    counters = dict(report["counters"])
    malformed = counters.pop("malformed")
    for key, value in counters.items():
        gauge = _gauge(key, f"{key.replace('_', ' ')} since the reporting stage started")
        if value is not None:
            gauge.add_metric([], float(value))
        out.append(gauge)
    frames = _gauge(
        "malformed_frames", "malformed frames dropped since the stage started", ["stage"]
    )
    for stage, value in malformed.items():
        if value is not None:
            frames.add_metric([stage], float(value))
    out.append(frames)
    return out


class HealthCollector(Collector):
    """Builds every metric at scrape time from a fresh health report."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from families(gather(self.settings))


def start_exporter(settings: Settings) -> Any:
    """Serve /metrics on 127.0.0.1:metrics_port in a daemon thread; return the server."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(settings))
    server, _thread = start_http_server(settings.metrics_port, METRICS_HOST, registry)
    return server


def serve_forever(settings: Settings) -> int:
    """`hlstream metrics`: run the exporter until Ctrl-C/SIGTERM."""
    done = StopFlag().install()
    server = start_exporter(settings)
    print(f"hlstream: metrics on http://{METRICS_HOST}:{settings.metrics_port}/metrics", flush=True)
    while not done.wait(3600):
        pass
    server.shutdown()
    return 0
