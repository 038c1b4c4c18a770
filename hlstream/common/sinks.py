"""The scale-out sinks' switch and secrets: the relay runs when a sink is set, and reads
its credentials from files or the environment, never from a logged setting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hlstream.common.config import Settings, env_name
from hlstream.common.errors import ConfigError


def has_sink(settings: Settings) -> bool:
    """True when a scale-out sink is configured (the relay stage runs)."""
    return bool(settings.nats_url or settings.postgres_dsn)


@dataclass(frozen=True, slots=True)
class SinkSecrets:
    """Credentials of the sinks, read from files or the environment; never logged."""

    nats_password: str = ""
    nats_token: str = ""
    postgres_password: str = ""

    def __repr__(self) -> str:
        return "SinkSecrets(<redacted>)"


def _secret(settings: Settings, name: str, env: Mapping[str, str]) -> str:
    """The secret in the file setting `name`, else in its variable (`nats_token_file`:
    HLSTREAM_NATS_TOKEN)."""
    path: str = getattr(settings, name)
    if not path:
        return env.get(env_name(name.removesuffix("_file")), "")
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"setting {name}: {path} cannot be read ({exc.strerror})") from None


def sink_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> SinkSecrets:
    """The sinks' secrets: each from its file setting, else its environment variable."""
    env = os.environ if environ is None else environ
    return SinkSecrets(
        nats_password=_secret(settings, "nats_password_file", env),
        nats_token=_secret(settings, "nats_token_file", env),
        postgres_password=_secret(settings, "postgres_password_file", env),
    )
