"""The relay's part of `hlstream status` and `/metrics`, from `run_dir/relay-status.json`."""

from __future__ import annotations

from pathlib import Path

from hlstream.services.relay.core import RelayStatus, SinkStatus
from hlstream.services.relay.files_io import read_relay_status

STALE_S = 10.0  # a heartbeat older than this: the relay is not running


def _sink(name: str, sink: SinkStatus) -> str:
    if not sink.configured:
        return ""
    state = "connected" if sink.connected else f"DOWN ({sink.last_error or 'connecting'})"
    return f"{name} {state}"


def relay_line(run_dir: Path, now_ms: int) -> str | None:
    """`relay: nats connected, postgres DOWN (...); lag 0.1 s / 12 trades; published ...`."""
    status = read_relay_status(run_dir)
    if status is None:
        return None
    sinks = ", ".join(
        s for s in (_sink("nats", status.nats), _sink("postgres", status.postgres)) if s
    )
    age_s = (now_ms - status.ts_ms) / 1000
    stale = f" STALE ({age_s:.0f} s old)" if age_s > STALE_S else ""
    return (
        f"relay: {sinks}{stale}; lag {status.lag_s:.1f} s / {status.lag_trades} trades"
        f" / {status.lag_bytes} bytes; published {status.published}, server-dropped duplicates"
        f" {status.duplicates}, found in stream {status.skipped}; bars {status.bars_published}"
        f" to NATS, {status.bars_upserted} to Postgres; errors {status.errors}"
    )


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
