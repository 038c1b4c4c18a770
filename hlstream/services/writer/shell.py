"""Writer run loop: open the CSV files, backfill from REST, then receive `[identity, b"bar" |
b"inexact", payload]` on a ROUTER and answer `[identity, b"ack", ack]` once the item is durably
handled (store.py). The status file is replaced once a second."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict
from typing import Any

import zmq

from hlstream.common.bus_io import curve_keys, new_session_id, secure_server
from hlstream.common.durable import hold_lock
from hlstream.common.errors import ConfigError, ProtocolError
from hlstream.common.messages import Bar, Envelope, Inexact, ack_of, encode_message
from hlstream.common.stage_io import Stage
from hlstream.common.status import FileStatus, StageStatus
from hlstream.common.status_io import write_status
from hlstream.services.writer import core
from hlstream.services.writer.auditor_io import Auditor
from hlstream.services.writer.dirlock import DATA_LOCK_FILE
from hlstream.services.writer.store import Store

POLL_MS = 200
STATUS_EVERY_S = 1.0
LINGER_MS = 500  # on close, give queued acks this long to leave
LOG_EVERY_S = 10.0  # a repeated warning is logged at most this often
LOCK_FILE = "writer.lock"
AUDIT_JOIN_S = 5.0
DAY_MS = 86_400_000


class Writer:
    """The writer process: the ROUTER socket, the run-dir lock and the status around a Store."""

    def __init__(self, stage: Stage) -> None:
        self.settings, self.stop, self.log = stage.settings, stage.stop, stage.log
        self.context, self.now_ms = stage.context, stage.clock.now_ms
        self.store = Store(self.settings, self.stop, self.log, now_ms=self.now_ms)
        self.counters = self.store.counters
        self.auditor: Auditor | None = None
        self.session = new_session_id()
        self.ack_seq = 0
        self._lock_fd = -1
        self._data_lock_fd = -1
        self.day = self.now_ms() // DAY_MS  # the UTC day of the last rollover check

    def acquire_lock(self) -> None:
        """Refuse to run twice on one run dir (two ROUTERs would steal each other's bars)."""
        run_dir, data_dir = self.settings.run_dir, self.settings.data_dir
        path = run_dir / LOCK_FILE
        self._lock_fd = hold_lock(path, f"pid {os.getpid()}", f"another writer holds {path}")
        # One writer per data dir too; tools check it with dirlock.writer_running.
        self._data_lock_fd = hold_lock(
            data_dir / DATA_LOCK_FILE,
            f"run dir {run_dir}, pid {os.getpid()}",
            f"data dir {data_dir} is already written by another hlstream writer",
            ConfigError,
        )

    def parse_frames(self, frames: list[bytes]) -> tuple[bytes, Bar | Inexact]:
        """Validate `[identity, b"bar"|b"inexact", payload]`; ProtocolError when malformed."""
        if len(frames) != 3:
            raise ProtocolError(f"expected [identity, kind, payload], got {len(frames)} frames")
        item = core.decode_writer_frame(frames[1], frames[2])
        interval_ms = self.settings.interval_ms
        if item.coin not in self.settings.coins or item.interval not in interval_ms:
            raise ProtocolError(f"{frames[1]!r} for unconfigured {item.coin!r} {item.interval!r}")
        if isinstance(item, Bar):
            core.validate_bar(item, interval_ms[item.interval])
        else:
            core.notice_windows(item, interval_ms[item.interval])  # aligned, or ProtocolError
        return frames[0], item

    def ack(self, socket: zmq.Socket[Any], identity: bytes, item: Bar | Inexact) -> None:
        self.ack_seq += 1
        payload = encode_message(Envelope(self.session, self.ack_seq), ack_of(item))
        try:
            socket.send_multipart([identity, b"ack", payload], flags=zmq.NOBLOCK)
            self.counters.acks += 1
        except zmq.Again:
            self.log.warning_limited("ack_drop", LOG_EVERY_S, "ack_dropped", coin=item.coin)

    def start_audit(self) -> None:
        """The venue audit of every open file's new rows (off when its weight share is 0)."""
        if self.settings.audit_weight_share <= 0 or not self.store.files:
            return
        paths = {key: handle.path for key, handle in self.store.files.items()}
        self.auditor = Auditor(
            self.settings, self.stop, self.log, self.store.info, paths, now_ms=self.now_ms
        )
        self.store.on_written = self.auditor.offer
        self.store.on_gap = self.auditor.gap_after_close
        self.auditor.start()

    def rollover(self) -> None:
        """At each UTC midnight, with `audit_apply_at_rollover`: apply the pending revisions of
        the closed days (the only time the writer rewrites a file and byte offsets change)."""
        day = self.now_ms() // DAY_MS
        if day > self.day and self.settings.audit_apply_at_rollover:
            self.store.apply_revisions(day * DAY_MS)
        self.day = max(self.day, day)

    def publish_status(self) -> None:
        """Atomically replace run_dir/writer-status.json."""
        if self.auditor is not None:
            total, counters = self.auditor.totals(), self.counters
            counters.rows_audited, counters.rows_matched = total.audited, total.matched
            counters.rows_mismatched = total.mismatched
            counters.rows_unauditable, counters.audit_pending = total.unauditable, total.pending
        scores = {} if self.auditor is None else self.auditor.scores()
        files: dict[str, FileStatus] = {}
        for (coin, interval), handle in self.store.files.items():
            last = None if handle.last is None else handle.last.start_ms
            files[handle.path.name] = FileStatus(coin, interval, last, scores.get((coin, interval)))
        status = StageStatus(
            "writer",
            self.now_ms(),
            os.getpid(),
            self.session,
            asdict(self.counters),
            files=files,
            refused={f"{c} {i}": err for (c, i), err in self.store.refused.items()},
            rest=self.store.rest.health.status(),
        )
        write_status(self.settings.run_dir, status)

    def serve(self, socket: zmq.Socket[Any]) -> None:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self.stop.fileno(), zmq.POLLIN)  # a stop wakes the poll at once
        next_status = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_status:
                self.rollover()
                self.publish_status()
                next_status = time.monotonic() + STATUS_EVERY_S
            if not dict(poller.poll(POLL_MS)):
                continue
            while not self.stop.is_set():
                try:
                    frames = socket.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.on_frames(socket, frames)

    def on_frames(self, socket: zmq.Socket[Any], frames: list[bytes]) -> None:
        try:
            identity, item = self.parse_frames(frames)
        except ProtocolError as exc:
            self.counters.malformed += 1
            self.log.warning_limited(
                "malformed",
                LOG_EVERY_S,
                "malformed_frame",
                error=str(exc),
                total=self.counters.malformed,
            )
            return
        store = self.store
        handled = store.handle_notice(item) if isinstance(item, Inexact) else store.handle_bar(item)
        if handled:
            self.ack(socket, identity, item)

    def run(self) -> None:
        """Start up, serve until SIGTERM/SIGINT, then close everything."""
        # A file-size limit must surface as EFBIG (and a clean truncate), not kill us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.acquire_lock()
        socket = self.context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        secure_server(socket, curve_keys(self.settings))
        try:
            self.store.open_files()
            self.store.backfill()
            self.start_audit()
            socket.bind(self.settings.writer_endpoint)
            self.log.info(
                "listening",
                endpoint=self.settings.writer_endpoint,
                files=len(self.store.files),
                refused=len(self.store.refused),
            )
            self.serve(socket)
            self.publish_status()
        finally:
            if self.auditor is not None:
                self.stop.set()  # the audit thread ends with the writer, whatever stopped it
                self.auditor.join(AUDIT_JOIN_S)
            socket.close()
            self.store.close()
            close = getattr(self.store.info, "close", None)
            if close is not None:
                close()
            self.log.info(
                "stopped", signal=self.stop.signal_name or "none", **asdict(self.counters)
            )
