"""Settings for every stage: code defaults < TOML file < `HLSTREAM_*` environment < flags.
`load_settings` raises `ConfigError` naming the bad setting; `coins = "all"` stays `("all",)`
here (each stage expands it: common/universe_io.py)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, NamedTuple, get_type_hints
from urllib.parse import urlparse

from hlstream.common.errors import ConfigError
from hlstream.common.filenames import check_unique_filenames, encode_coin
from hlstream.common.timebucket import parse_interval

DEFAULT_COINS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "LINK", "HYPE")
_COIN_RE = re.compile(r"^[A-Za-z0-9@:/._\-]{1,64}$")
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
ALL_COINS = "all"  # `coins = "all"`: every listed perp, expanded at startup (common/universe.py)
MAX_WS_CONNECTIONS = 10  # venue limit per IP
MAX_WS_SUBSCRIPTIONS = 1000  # venue limit per IP
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_IPC_PATH = 100  # a unix socket path holds about 107 bytes


class Range(NamedTuple):
    """The inclusive bounds of a numeric setting, checked by `validate`."""

    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective configuration, frozen after validation."""

    ws_url: str = "wss://api.hyperliquid.xyz/ws"
    info_url: str = "https://api.hyperliquid.xyz/info"
    coins: tuple[str, ...] = DEFAULT_COINS
    intervals: tuple[str, ...] = ("30m",)
    data_dir: Path = Path("./data")
    run_dir: Path = Path("./run")
    backfill_hours: Annotated[float, Range(0.0, 24.0 * 365)] = 6.0
    stale_seconds: Annotated[float, Range(1.0, 3600.0)] = 90.0
    grace_seconds: Annotated[float, Range(0.0, 60.0)] = 2.0
    ping_seconds: Annotated[float, Range(1.0, 55.0)] = 20.0
    idle_ping_seconds: Annotated[float, Range(0.2, 55.0)] = 5.0
    pong_timeout_seconds: Annotated[float, Range(0.2, 60.0)] = 5.0
    audit_settle_seconds: Annotated[float, Range(0.0, 86_400.0)] = 180.0
    audit_weight_share: Annotated[float, Range(0.0, 0.5)] = 0.25
    audit_apply_at_rollover: bool = False
    backoff_base_seconds: Annotated[float, Range(0.01, 60.0)] = 0.5
    backoff_cap_seconds: Annotated[float, Range(0.1, 600.0)] = 60.0
    validate_coins: bool = True
    log_level: str = "INFO"
    log_json: bool = False
    trades_endpoint: str = ""
    bars_endpoint: str = ""
    writer_endpoint: str = ""
    replay_endpoint: str = ""
    metrics_port: Annotated[int, Range(0, 65535)] = 0
    book_coins: tuple[str, ...] = ()
    bbo_coins: tuple[str, ...] = ()
    user_fills: tuple[str, ...] = ()  # stored lowercase
    ws_subscriptions_per_connection: Annotated[int, Range(1, MAX_WS_SUBSCRIPTIONS)] = 200
    curve_secret_file: str = ""
    tape_days: Annotated[int, Range(2, 36_500)] = 7  # yesterday's segment still takes late trades
    checkpoint_seconds: Annotated[float, Range(0.5, 3600)] = 5.0
    health_disconnected_seconds: Annotated[float, Range(1.0, 86_400.0)] = 60.0
    health_no_trade_seconds: Annotated[float, Range(1.0, 86_400.0)] = 120.0
    health_rest_failing_seconds: Annotated[float, Range(1.0, 86_400.0)] = 60.0
    # Scale-out sinks (docs/scale-out.md): secrets come from files or the environment
    # (common/sinks.py); a password inside a URL or DSN is redacted by `describe`.
    nats_url: str = ""  # nats://host:4222, comma list for a cluster; "" = off
    nats_user: str = ""
    nats_password_file: str = ""
    nats_token_file: str = ""
    nats_creds_file: str = ""
    nats_tls_ca_file: str = ""
    nats_replicas: Annotated[int, Range(1, 5)] = 1
    nats_duplicate_window_seconds: Annotated[float, Range(1.0, 86_400.0)] = 120.0
    postgres_dsn: str = ""  # postgresql://user@host:5432/db or key=value; "" = off
    postgres_password_file: str = ""

    @property
    def interval_ms(self) -> dict[str, int]:
        return {label: parse_interval(label) for label in self.intervals}


FIELD_TYPES: dict[str, object] = get_type_hints(Settings)  # Range metadata stripped
_RANGES: dict[str, Range] = {
    name: hint.__metadata__[0]
    for name, hint in get_type_hints(Settings, include_extras=True).items()
    if hasattr(hint, "__metadata__")
}


def env_name(field_name: str) -> str:
    return "HLSTREAM_" + field_name.upper()


def _coerce(name: str, raw: object) -> object:
    """Turn a TOML/env/flag value into the field's type, or raise ConfigError."""
    kind = FIELD_TYPES[name]
    try:
        if kind == tuple[str, ...]:
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind is Path:
            if not isinstance(raw, str | Path) or not str(raw):
                raise ValueError("expected a path")
            return Path(raw)
        if kind is int:
            if isinstance(raw, bool) or not str(raw).strip().lstrip("-").isdigit():
                raise ValueError("expected a whole number")
            return int(str(raw).strip())
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(str(raw))
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        return raw
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {raw!r} is invalid ({exc})") from None


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    section = data.get("hlstream", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [hlstream] must be a table")
    unknown = sorted(set(section) - set(FIELD_TYPES))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return dict(section)


def load_settings(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build validated Settings from the TOML file, the environment and parsed flags."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}  # each of its field's type (_coerce)
    config_path = getattr(args, "config", None) or env.get("HLSTREAM_CONFIG")
    if config_path:
        for key, raw in _read_toml(Path(config_path)).items():
            values[key] = _coerce(key, raw)
    for name in FIELD_TYPES:
        if env_name(name) in env:
            values[name] = _coerce(name, env[env_name(name)])
        flag = getattr(args, f"cfg_{name}", None)
        if flag is not None:
            values[name] = _coerce(name, flag)
    return validate(Settings(**values))


def _check_url(name: str, url: str, schemes: Sequence[str]) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigError(f"setting {name}: {url!r} is not a {'/'.join(schemes)} URL")


def _check_endpoint(name: str, endpoint: str, curve: bool) -> None:
    """ipc:// anywhere; tcp:// on loopback, or beyond loopback only with CURVE keys."""
    if endpoint.startswith("ipc://"):
        if len(endpoint) - len("ipc://") > MAX_IPC_PATH:
            raise ConfigError(f"setting {name}: ipc path is too long for a unix socket")
        return
    if endpoint.startswith("tcp://"):
        host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and not curve:
            raise ConfigError(
                f"setting {name}: {endpoint!r} binds beyond loopback, which needs CURVE keys"
            )
        return
    raise ConfigError(f"setting {name}: {endpoint!r} must start with ipc:// or tcp://")


def validate(settings: Settings) -> Settings:
    """Check every setting and fill derived defaults; raise ConfigError on the first problem."""
    _check_url("ws_url", settings.ws_url, ("ws", "wss"))
    _check_url("info_url", settings.info_url, ("http", "https"))
    if not settings.coins:
        raise ConfigError("setting coins: the coin list is empty")
    if ALL_COINS in settings.coins and len(settings.coins) > 1:
        raise ConfigError(f"setting coins: {ALL_COINS!r} cannot be combined with other coins")
    for name in ("coins", "book_coins", "bbo_coins"):
        listed: tuple[str, ...] = getattr(settings, name)
        for coin in listed:
            if not _COIN_RE.match(coin):
                raise ConfigError(f"setting {name}: {coin!r} is not a valid coin name")
            encode_coin(coin)
        if len(set(listed)) != len(listed):
            raise ConfigError(f"setting {name}: a coin is listed twice")
    check_unique_filenames(settings.coins)
    for address in settings.user_fills:
        if not _ADDRESS_RE.match(address):
            raise ConfigError(
                f"setting user_fills: {address!r} is not an address (0x followed by 40 hex digits)"
            )
    user_fills = tuple(address.lower() for address in settings.user_fills)
    if len(set(user_fills)) != len(user_fills):
        raise ConfigError("setting user_fills: an address is listed twice")
    if not settings.intervals:
        raise ConfigError("setting intervals: the interval list is empty")
    for label in settings.intervals:
        parse_interval(label)
    if len(set(settings.intervals)) != len(settings.intervals):
        raise ConfigError("setting intervals: an interval is listed twice")
    for name, (low, high) in _RANGES.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise ConfigError(f"setting {name}: {value} is outside {low}..{high}")
    _check_sinks(settings)
    if settings.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"setting log_level: {settings.log_level!r} is not a log level")
    curve_file = settings.curve_secret_file
    if curve_file:
        curve_file = str(Path(curve_file).resolve())
        read_curve_secret(curve_file)
    run_dir = settings.run_dir.resolve()
    resolved = replace(
        settings,
        data_dir=settings.data_dir.resolve(),
        run_dir=run_dir,
        log_level=settings.log_level.upper(),
        user_fills=user_fills,
        curve_secret_file=curve_file,
        trades_endpoint=settings.trades_endpoint or f"ipc://{run_dir}/trades.sock",
        bars_endpoint=settings.bars_endpoint or f"ipc://{run_dir}/bars.sock",
        writer_endpoint=settings.writer_endpoint or f"ipc://{run_dir}/writer.sock",
        replay_endpoint=settings.replay_endpoint or f"ipc://{run_dir}/replay.sock",
    )
    for name in ("trades_endpoint", "bars_endpoint", "writer_endpoint", "replay_endpoint"):
        _check_endpoint(name, getattr(resolved, name), bool(curve_file))
    return resolved


_NATS_SCHEMES = ("nats", "tls", "ws", "wss")
_SECRET_FILES = (
    "nats_password_file",
    "nats_token_file",
    "nats_creds_file",
    "nats_tls_ca_file",
    "postgres_password_file",
)


def _check_sinks(settings: Settings) -> None:
    """The scale-out sink settings: URLs and readable secret files."""
    if settings.nats_url:
        for url in settings.nats_url.split(","):
            _check_url("nats_url", url.strip(), _NATS_SCHEMES)
    dsn = settings.postgres_dsn
    if dsn and "://" in dsn:
        _check_url("postgres_dsn", redact_url(dsn), ("postgresql", "postgres"))
    for name in _SECRET_FILES:
        path = getattr(settings, name)
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"setting {name}: {path} cannot be read")


_DSN_PASSWORD_RE = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def redact_url(text: str) -> str:
    """`text` (URL list or libpq DSN) with every password replaced by `***`."""
    text = _DSN_PASSWORD_RE.sub(r"\1***", text)
    return re.sub(r"(://[^/@,:\s]*):[^/@,\s]*@", r"\1:***@", text)


def read_curve_secret(path: str) -> bytes:
    """The Z85-encoded CURVE secret key (40 characters) stored in `path`."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        reason = exc.strerror
        raise ConfigError(f"setting curve_secret_file: {path} cannot be read ({reason})") from None
    if len(text) != 40 or not text.isascii() or any(ch.isspace() for ch in text):
        raise ConfigError(
            f"setting curve_secret_file: {path} must hold one 40-character Z85 secret key "
            "(make one with `hlstream curve-keygen FILE`)"
        )
    return text.encode("ascii")


def prepare_dirs(settings: Settings) -> None:
    """Create the data and run dirs (run dir mode 0700) and check both are writable."""
    for name, path, mode in (
        ("data_dir", settings.data_dir, 0o755),
        ("run_dir", settings.run_dir, 0o700),
    ):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"setting {name}: {path} is not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True, mode=mode)
            if name == "run_dir":
                path.chmod(0o700)
            probe = path / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(f"setting {name}: {path} is not writable ({reason})") from None


def describe(settings: Settings) -> str:
    """One-line `key=value` summary of the effective settings for the startup log."""
    values = ((item.name, getattr(settings, item.name)) for item in fields(Settings))
    return " ".join(f"{k}={_shown(k, v)}" for k, v in values)


def _shown(name: str, value: object) -> object:
    """A setting as the startup log shows it: lists joined, passwords in URLs redacted."""
    if isinstance(value, tuple):
        return ",".join(value)
    return redact_url(str(value)) if name in ("nats_url", "postgres_dsn") else value
