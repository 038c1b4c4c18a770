"""One bar CSV file: create with header, cut a torn tail, read the last row, append safely.

Invariants (DESIGN.md "CSV files"):
- an append is ONE `os.write` of whole lines under `flock(LOCK_EX)`, then `fsync`; rows at or
  before the last row (re-read under the lock) are dropped, so concurrent appenders are safe;
- a failed write or fsync truncates back to the size before it and raises TransientError;
- a file whose header is not exactly ours is refused (IntegrityError), never overwritten;
- an append never goes to a file replaced since it was opened (revisions_io renames a new
  file in): a descriptor whose inode is no longer the path's is reopened first."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hlstream.common.csvrow import HEADER_LINE, Row, format_row, parse_row
from hlstream.common.durable import create_whole, last_line_end
from hlstream.common.errors import IntegrityError, TransientError
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.services.writer.core import row_of


class WriteFailedError(TransientError):
    """An append failed (ENOSPC, EFBIG, EIO...); the file was restored to its previous size."""


_HEADER_BYTES = HEADER_LINE.encode("ascii")


class CsvFile:
    """An open bar CSV file. Call `open()` first; `close()` when done."""

    def __init__(self, path: Path, log: EventLog, interval_ms: int) -> None:
        self.path = path
        self.log = log
        self.interval_ms = interval_ms
        self.fd = -1
        self.last: Row | None = None  # last row seen by this process (cache for status)

    def open(self) -> CsvFile:
        """Open the file if it exists (check the header, cut a torn tail); else the first
        append creates it, so a coin that never gets a row leaves no file."""
        if self.path.exists():
            self._open_fd()
        return self

    def _open_fd(self) -> None:
        if create_whole(self.path, _HEADER_BYTES):  # a reader never sees it without its header
            self.log.info("csv_created", path=str(self.path))
        self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            with self._locked(fcntl.LOCK_EX):
                self._check_header()
                self._cut_torn_tail()
                self.last = self._read_last_row()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        fcntl.flock(self.fd, mode)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _size(self) -> int:
        return os.fstat(self.fd).st_size

    def _check_header(self) -> None:
        """Under LOCK_EX: write the header into an empty file, refuse a foreign one."""
        size = self._size()
        head = os.pread(self.fd, len(_HEADER_BYTES), 0)
        if size == 0 or (size < len(_HEADER_BYTES) and _HEADER_BYTES.startswith(head)):
            # New file, or a header torn by a crash during creation: (re)write it whole.
            if size:
                self.log.warning("torn_tail_cut", path=str(self.path), bytes=size)
                os.ftruncate(self.fd, 0)
            os.write(self.fd, _HEADER_BYTES)
            os.fsync(self.fd)
            self.log.info("csv_created", path=str(self.path))
            return
        if head != _HEADER_BYTES:
            raise IntegrityError(
                f"{self.path} does not start with the header {HEADER_LINE.strip()!r}; "
                "refusing to touch a foreign file"
            )

    def _cut_torn_tail(self) -> None:
        """Under LOCK_EX: truncate a last line without newline (crash mid-write)."""
        size = self._size()
        if size == 0 or os.pread(self.fd, 1, size - 1) == b"\n":
            return
        keep = last_line_end(self.fd, size)
        os.ftruncate(self.fd, keep)
        os.fsync(self.fd)
        self.log.warning("torn_tail_cut", path=str(self.path), bytes=size - keep)

    def _read_last_row(self) -> Row | None:
        """Under a lock: parse the last complete line; None when only the header is there."""
        size = self._size()
        if size <= len(_HEADER_BYTES):
            return None
        line_start = last_line_end(self.fd, size - 1)
        line = os.pread(self.fd, size - line_start, line_start)
        if line_start == 0:
            return None
        return parse_row(line.decode("utf-8", errors="replace"))

    def last_row(self) -> Row | None:
        """The file's last row, read from its tail under LOCK_SH; None before the file exists."""
        if self.fd < 0:
            return None
        with self._locked(fcntl.LOCK_SH):
            self.last = self._read_last_row()
        return self.last

    def append(self, bars: list[Bar]) -> list[Bar]:
        """Append the bars not yet in the file; return the ones written. TransientError on a
        failed write (file restored), IntegrityError on a hole or a step back."""
        if self.fd < 0 and bars:
            self._open_fd()
        while True:
            with self._locked(fcntl.LOCK_EX):
                if not self._replaced():
                    return self._append_locked(bars)
            self.close()
            self._open_fd()

    def _replaced(self) -> bool:
        """Whether the path now names another file than the one we hold open."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self.fd)
        return (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino)

    def _append_locked(self, bars: list[Bar]) -> list[Bar]:
        """Under LOCK_EX, on the file the path names: append the fresh bars."""
        self._cut_torn_tail()
        last = self._read_last_row()
        fresh = [bar for bar in bars if last is None or bar.start_ms > last.start_ms]
        expected = None if last is None else last.start_ms + self.interval_ms
        for bar in fresh:
            if expected is not None and bar.start_ms != expected:
                raise IntegrityError(
                    f"{self.path}: bar {bar.start_ms} does not follow "
                    f"{expected - self.interval_ms}; it would leave a hole or go backwards"
                )
            expected = bar.start_ms + self.interval_ms
        if not fresh:
            self.last = last
            return []
        self._write_whole(b"".join(format_row(bar).encode("utf-8") for bar in fresh))
        self.last = row_of(fresh[-1])
        return fresh

    def _write_whole(self, data: bytes) -> None:
        """Under LOCK_EX: one write + fsync, or restore the previous size and raise."""
        before = self._size()
        try:
            written = os.write(self.fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes")
            os.fsync(self.fd)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            try:
                os.ftruncate(self.fd, before)
                os.fsync(self.fd)
                restored = True
            except OSError:
                restored = False
            self.log.error(
                "csv_write_failed",
                path=str(self.path),
                errno=errno.errorcode.get(exc.errno or 0, exc.errno),
                reason=reason,
                bytes=len(data),
                restored=restored,
            )
            raise WriteFailedError(f"write to {self.path} failed: {reason}") from None
