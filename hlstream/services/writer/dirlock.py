"""One writer per data dir: an exclusive flock on `data_dir/.hlstream-writer.lock` for life
(it dies with the process); a second writer is refused with a ConfigError naming the first."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from hlstream.common.durable import hold_lock
from hlstream.common.errors import ConfigError

DATA_LOCK_FILE = ".hlstream-writer.lock"


def hold_dir_lock(data_dir: Path, run_dir: Path) -> int:
    """Take the data dir's writer lock and record our run dir in it; return the fd to keep."""
    return hold_lock(
        data_dir / DATA_LOCK_FILE,
        f"run dir {run_dir}, pid {os.getpid()}",
        f"data dir {data_dir} is already written by another hlstream writer",
        ConfigError,
    )


def writer_running(data_dir: Path) -> bool:
    """Whether a writer holds the data dir's lock (tools refuse to replace its files then)."""
    try:
        fd = os.open(data_dir / DATA_LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
