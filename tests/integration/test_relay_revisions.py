"""A revision reaches the sinks: a `.revisions` line appended while the relay runs becomes the
Postgres row (revision + 1) and one HL_BARS message with the next revision; a relay kill -9
before its progress recorded the revision neither bumps it twice nor duplicates the message;
`hlstream repair` rewriting the file afterwards sends nothing more. Real nats-server and
PostgreSQL (tests/support/servers.py); the relay runs alone on a hand-written bar file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import msgspec
import psycopg

from hlstream.common import revisions_io
from hlstream.common.csvrow import HEADER_LINE, Row
from hlstream.common.filenames import csv_filename
from hlstream.common.revisions import VENUE_MISMATCH, Revision
from hlstream.common.revisions_io import apply_file
from hlstream.common.timebucket import format_window
from hlstream.services.relay.core import JsBar, RelayProgress
from tests.support.servers import NatsServer, PostgresServer, stream_messages
from tests.support.wait import wait_for

T0 = 1_704_067_200_000
ROWS = [Row(T0 + i * 60_000, "10", "12", "9", "11", f"1.{i}") for i in range(3)]


def _line(row: Row) -> str:
    return ",".join((format_window(row.start_ms), row.open, row.high, row.low, row.close,
                     row.volume)) + "\n"  # fmt: skip


def test_a_revision_reaches_postgres_and_hl_bars_once_across_a_relay_kill_9(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    path = data / csv_filename("BTC", "1m")
    path.write_text(HEADER_LINE + "".join(map(_line, ROWS)))
    nats_server = NatsServer(tmp_path).start()
    pg = PostgresServer().start()
    env = {
        **os.environ, "HLSTREAM_DATA_DIR": str(data), "HLSTREAM_RUN_DIR": str(run),
        "HLSTREAM_COINS": "BTC", "HLSTREAM_INTERVALS": "1m",
        "HLSTREAM_NATS_URL": nats_server.url, "HLSTREAM_POSTGRES_DSN": pg.dsn(),
        "HLSTREAM_POSTGRES_PASSWORD": pg.password,
    }  # fmt: skip
    progress = run / "relay-progress.json"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "hlstream.services.relay"], env=env)

    def saved() -> RelayProgress:
        try:
            return msgspec.json.decode(progress.read_bytes(), type=RelayProgress)
        except (OSError, msgspec.DecodeError):
            return RelayProgress()

    def both(test) -> bool:
        p = saved()
        states = [files.get(path.name) for files in (p.nats_bars, p.postgres_bars)]
        return all(s is not None and test(s) for s in states)

    def table():
        try:
            with psycopg.connect(pg.dsn(password=True)) as conn:
                return conn.execute(
                    "SELECT (extract(epoch FROM start_ts) * 1000)::bigint, close::text,"
                    " volume::text, exact, revision FROM hlstream_bars ORDER BY start_ts"
                ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []

    def messages() -> list[tuple[str, JsBar]]:
        decoder = msgspec.msgpack.Decoder(JsBar)
        return [(i, decoder.decode(d)) for _, i, d in stream_messages(nats_server.url, "HL_BARS")]

    relay = start()
    try:
        wait_for(lambda: both(lambda s: s.offset == path.stat().st_size), 30, "rows sent")
        before_revision = progress.read_bytes()
        assert [r[4] for r in table()] == [0, 0, 0]
        old, new = ROWS[1], Row(ROWS[1].start_ms, "10", "12", "9", "11.5", "2.25")
        revisions_io.append(path, [Revision(old, new, VENUE_MISMATCH, T0 + 3_600_000)])
        want = (new.start_ms, "11.5", "2.25", True, 1)
        wait_for(lambda: want in table(), 30, "the revision in postgres")
        wait_for(lambda: len(messages()) == 4, 30, "the revision in HL_BARS")
        wait_for(lambda: both(lambda s: s.revisions_offset > 0), 30, "revision saved")
        # kill -9 at the worst moment: both sinks have the revision, the progress does not.
        relay.send_signal(signal.SIGKILL)
        relay.wait()
        progress.write_bytes(before_revision)
        relay = start()
        wait_for(lambda: both(lambda s: s.revisions_offset > 0), 30, "revision seen again")
        inode = path.stat().st_ino
        assert apply_file(path) is not None and path.stat().st_ino != inode
        wait_for(lambda: both(lambda s: s.inode == path.stat().st_ino), 30, "repair seen")
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(timeout=30) == 0
        rows, stream = table(), messages()
    finally:
        if relay.poll() is None:
            relay.kill()
        nats_server.stop()
        pg.remove()
    assert rows == [
        (ROWS[0].start_ms, "11", "1.0", True, 0), want, (ROWS[2].start_ms, "11", "1.2", True, 0)
    ]  # fmt: skip
    ids = Counter(i for i, _ in stream)
    assert [i for i, n in ids.items() if n > 1] == [], "a bar is in HL_BARS twice"
    want_ids = [f"1m:BTC:{r.start_ms}:0" for r in ROWS] + [f"1m:BTC:{new.start_ms}:1"]
    assert sorted(ids) == sorted(want_ids)
    revised = stream[-1][1]
    assert (revised.close, revised.volume, revised.exact, revised.revision) == want[1:]
