"""The PostgreSQL side of the relay: connect, create the versioned schema, upsert bars.

Each batch of bars is one transaction; the relay advances its progress only after the
commit, and the upsert is idempotent (core.UPSERT_SQL), so a batch re-sent after a crash
or an outage changes nothing that is already there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import psycopg
import psycopg.conninfo

from hlstream.common.config import Settings
from hlstream.common.errors import ConfigError
from hlstream.common.sinks import SinkSecrets
from hlstream.services.relay.core import (
    SCHEMA_STATEMENTS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_QUERY,
    UPSERT_SQL,
    JsBar,
    upsert_params,
)

CONNECT_TIMEOUT_S = 5

PostgresError = (psycopg.Error, OSError)


class PostgresSink:
    """One connection; every method raises a `PostgresError` on failure."""

    def __init__(self, settings: Settings, secrets: SinkSecrets) -> None:
        self._dsn = settings.postgres_dsn
        self._password = secrets.postgres_password
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def connect(self) -> None:
        """Connect and create the schema if missing; ConfigError for a newer schema."""
        extra: dict[str, str] = {"connect_timeout": str(CONNECT_TIMEOUT_S)}
        if self._password:
            extra["password"] = self._password
        conn = psycopg.connect(psycopg.conninfo.make_conninfo(self._dsn, **extra))
        try:
            with conn.transaction():
                # One relay creates the schema at a time (two hosts may start together).
                conn.execute("SELECT pg_advisory_xact_lock(4837261)")
                for statement in SCHEMA_STATEMENTS:
                    conn.execute(statement)
                row = conn.execute(SCHEMA_VERSION_QUERY).fetchone()
            version = int(str(row[0])) if row else 0
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"postgres schema hlstream_bars is version {version}; this relay knows "
                    f"{SCHEMA_VERSION}: upgrade hlstream"
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(*PostgresError):
                conn.close()

    def upsert(self, bars: Sequence[JsBar]) -> None:
        """Upsert `bars` in one transaction."""
        assert self._conn is not None
        try:
            with self._conn.transaction(), self._conn.cursor() as cursor:
                cursor.executemany(UPSERT_SQL, [upsert_params(bar) for bar in bars])
        except BaseException:
            self.close()  # a broken connection is reopened by the shell
            raise
