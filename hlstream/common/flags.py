"""The settings as command-line flags, with their one description each."""

from __future__ import annotations

import argparse
from dataclasses import fields

from hlstream.common.config import FIELD_TYPES, Settings, env_name

# One line per setting: `hlstream help settings` and each flag's help.
SETTING_HELP: dict[str, str] = {
    "ws_url": "websocket endpoint of the exchange",
    "info_url": "REST info endpoint (POST JSON)",
    "coins": "comma list of coins, exact case (kPEPE, PURR/USDC, @107, xyz:TSLA), or all",
    "intervals": "comma list of bar intervals: Ns, Nm, Nh, Nd (must divide a day)",
    "data_dir": "bar CSV files, and the trade tape under tape/",
    "run_dir": "sockets, supervisord, logs, checkpoint and status files (mode 0700)",
    "backfill_hours": "how far back startup backfill reaches for a new file",
    "stale_seconds": "no message for this long: reconnect",
    "grace_seconds": "wait after a window's end for late trades before closing it",
    "ping_seconds": "JSON ping period (the server drops a connection silent for 60 s)",
    "idle_ping_seconds": "nothing received for this long: ping at once",
    "pong_timeout_seconds": "a ping unanswered for this long: the link is dead, reconnect",
    "audit_settle_seconds": "audit a row against the venue's candle this long after it ended",
    "audit_weight_share": "share of the venue's REST weight the audit may spend (0: no audit)",
    "audit_apply_at_rollover": "the writer applies closed days' revisions at each UTC midnight",
    "backoff_base_seconds": "first reconnect / retry delay",
    "backoff_cap_seconds": "longest reconnect / retry delay",
    "validate_coins": "check coins against the exchange's meta/spotMeta before subscribing",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_json": "JSON log lines when true",
    "trades_endpoint": "ingest's trade bus (ipc:// or loopback tcp://)",
    "bars_endpoint": "the aggregator's bar bus",
    "writer_endpoint": "aggregator -> writer handoff",
    "replay_endpoint": "where ingest serves tape history to late taps",
    "metrics_port": "Prometheus /metrics on 127.0.0.1 (0: off)",
    "book_coins": "coins whose l2Book is put on the bus",
    "bbo_coins": "coins whose bbo is put on the bus",
    "user_fills": "addresses whose userFills are put on the bus",
    "ws_subscriptions_per_connection": "ingest shards subscriptions over connections above this",
    "curve_secret_file": "CURVE server secret (hlstream curve-keygen): encrypts every bus socket",
    "tape_days": "trade tape retention in UTC days (2..36500); today's is never pruned",
    "checkpoint_seconds": "how often the aggregator checkpoints",
    "health_disconnected_seconds": "status is unhealthy when ingest is not connected this long",
    "health_no_trade_seconds": "status is unhealthy when a coin that trades has none this long",
    "health_rest_failing_seconds": "status is unhealthy when REST fails with no success this long",
    "nats_url": "NATS JetStream server(s) the relay publishes trades and bars to (off if empty)",
    "nats_user": "NATS user name (password from nats_password_file or HLSTREAM_NATS_PASSWORD)",
    "nats_password_file": "file holding the NATS password",
    "nats_token_file": "file holding a NATS token (or HLSTREAM_NATS_TOKEN)",
    "nats_creds_file": "NATS .creds file (JWT + nkey seed)",
    "nats_tls_ca_file": "CA bundle that signs the NATS server's TLS certificate",
    "nats_replicas": "replicas of the HL_TRADES / HL_BARS streams (1..5; 3 on a 3-node cluster)",
    "nats_duplicate_window_seconds": "JetStream duplicate window of the streams (msg-id dedupe)",
    "postgres_dsn": "PostgreSQL the relay upserts bars into (off if empty)",
    "postgres_password_file": "file holding the Postgres password (or HLSTREAM_POSTGRES_PASSWORD)",
}


def add_config_flags(parser: argparse.ArgumentParser, *, listed: bool = True) -> None:
    """Add `--config` and one `--kebab-name` flag per setting (left out of --help unless listed)."""
    parser.add_argument("--config", metavar="FILE", help="TOML config file")
    for name in FIELD_TYPES:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"cfg_{name}",
            metavar="VALUE",
            default=None,
            help=SETTING_HELP[name] if listed else argparse.SUPPRESS,
        )


def settings_help() -> str:
    """Every setting: its flag, environment variable, default and meaning."""
    defaults = Settings()
    lines = [
        "Settings: code default < TOML file (--config FILE, HLSTREAM_CONFIG) < environment",
        "< command-line flag. A TOML file uses the lower-case names, at top level or under",
        "[hlstream]. The pipeline commands take each one as the flag shown.",
        "",
    ]
    for item in fields(Settings):
        value = getattr(defaults, item.name)
        shown = ",".join(value) if isinstance(value, tuple) else str(value)
        if not shown and item.name.endswith("_endpoint"):
            shown = f"ipc://RUN_DIR/{item.name.removesuffix('_endpoint')}.sock"
        lines.append(f"  --{item.name.replace('_', '-')}  {env_name(item.name)}")
        lines.append(f"      {SETTING_HELP[item.name]} (default: {shown or 'off'})")
    return "\n".join(lines)
