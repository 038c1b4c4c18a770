"""One writer per data dir: the writer holds an exclusive flock on `data_dir/DATA_LOCK_FILE`
for life (it dies with the process); a second writer is refused naming the first."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

DATA_LOCK_FILE = ".hlstream-writer.lock"


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
