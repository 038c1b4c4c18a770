"""One writer per data dir: an exclusive flock on `data_dir/.hlstream-writer.lock` for life.

Two instances with different run dirs but the same data dir would race for the same rows; the
second writer is refused with a configuration error (exit 78) naming the first one's run dir.
The lock dies with the process (even on SIGKILL), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from hlstream.common.errors import ConfigError

DATA_LOCK_FILE = ".hlstream-writer.lock"


def hold_dir_lock(data_dir: Path, run_dir: Path) -> int:
    """Take the data dir's writer lock and record our run dir in it; return the fd to keep."""
    path = data_dir / DATA_LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"data dir {data_dir} is already written by another hlstream writer ({owner}); "
            "stop that instance or give this one its own data_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"run dir {run_dir}, pid {os.getpid()}\n".encode(), 0)
    return fd
