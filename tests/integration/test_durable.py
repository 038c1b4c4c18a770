"""The one durable-file module: atomic replace, the end of a file's whole lines, lock files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hlstream.common import durable
from hlstream.common.durable import hold_lock, last_line_end, write_atomic
from hlstream.common.errors import ConfigError, IntegrityError


def test_write_atomic_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")
    write_atomic(path, b"new")
    write_atomic(tmp_path / "status.json", b"{}", durable=False)
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin", "status.json"]


def test_write_atomic_that_fails_keeps_the_old_file_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoint.bin"
    path.write_bytes(b"old")

    def refuse(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.bin"]


@pytest.mark.parametrize(
    ("data", "keep"),
    [
        (b"", 0),
        (b"partial", 0),
        (b"a\n", 2),
        (b"a\nb\nhalf-a-li", 4),
        (b"a\nb\n", 4),
        (b"a\n" + b"x" * (3 * durable.TAIL_BLOCK_BYTES), 2),  # the torn line spans blocks
        (b"y" * durable.TAIL_BLOCK_BYTES + b"\n" + b"z" * 10, durable.TAIL_BLOCK_BYTES + 1),
    ],
)
def test_last_line_end_keeps_through_the_last_newline(
    tmp_path: Path, data: bytes, keep: int
) -> None:
    path = tmp_path / "file.csv"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert last_line_end(fd, len(data)) == keep
        assert last_line_end(fd, keep) == keep
    finally:
        os.close(fd)


def test_a_held_lock_refuses_the_second_holder_naming_the_first(tmp_path: Path) -> None:
    path = tmp_path / "writer.lock"
    first = hold_lock(path, "run dir /a, pid 1", "refused")
    try:
        with pytest.raises(ConfigError, match=r"^data dir busy \(run dir /a, pid 1\)$"):
            hold_lock(path, "run dir /b, pid 2", "data dir busy", ConfigError)
        with pytest.raises(IntegrityError, match="run dir /a"):
            hold_lock(path, "pid 3", "another writer holds it")
    finally:
        os.close(first)
    second = hold_lock(path, "pid 4", "refused")  # released with its descriptor
    os.close(second)
    assert path.read_text() == "pid 4\n"


def test_create_whole_makes_a_file_whole_and_never_replaces_one(tmp_path):
    path = tmp_path / "btc_5s_data.csv"

    assert durable.create_whole(path, b"Datetime,Open\n")
    assert path.read_bytes() == b"Datetime,Open\n"
    path.write_bytes(b"Datetime,Open\nrow\n")  # another process appended meanwhile
    assert not durable.create_whole(path, b"Datetime,Open\n")
    assert path.read_bytes() == b"Datetime,Open\nrow\n", "an existing file is never replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "no temp file left"
