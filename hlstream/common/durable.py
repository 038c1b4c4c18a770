"""Durable files, written once for every stage. A reader sees a replaced file whole (old or
new, never a mix), an appended file as whole lines plus at most one torn last line, and a
lock is never stale: the kernel drops a flock when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from hlstream.common.errors import HlstreamError, IntegrityError

TAIL_BLOCK_BYTES = 4096  # a few rows of either file: the last line is found in one read


def fsync_dir(path: Path) -> None:
    """Make the entries of folder `path` (a create, a rename) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(temp: Path, data: bytes, *, fsync: bool) -> None:
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically; with `durable`, fsync the file and its folder."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_temp(temp, data, fsync=durable)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def create_whole(path: Path, data: bytes) -> bool:
    """Create `path` holding `data`, durably and never seen short, and never over an existing
    file (another process may have made it): False if it exists."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        _write_temp(temp, data, fsync=True)
        os.link(temp, path)  # fails with FileExistsError instead of replacing
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def append_durably(path: Path, data: bytes, header: bytes) -> None:
    """Append `data` in one write + fsync, after `header` when the file is new or empty."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size == 0:
            data = header + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def last_line_end(fd: int, size: int) -> int:
    """Offset just after the last `\\n` in the first `size` bytes of `fd` (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - TAIL_BLOCK_BYTES)
        index = os.pread(fd, end - start, start).rfind(b"\n")
        if index >= 0:
            return start + index + 1
        end = start
    return 0


def hold_lock(
    path: Path, note: str, refusal: str, error: type[HlstreamError] = IntegrityError
) -> int:
    """Take the exclusive flock on `path` for as long as the returned descriptor stays open,
    and write `note` (who holds it) in the file. If another process holds it, raise
    `error("{refusal} ({its note})")`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
        os.close(fd)
        raise error(f"{refusal} ({holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{note}\n".encode(), 0)
    return fd
