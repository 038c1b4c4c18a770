"""Test suite configuration: the `faults` folder and the `faults` marker hold the same tests
(`make test` leaves them out; `make test-faults` runs them), tests marked `long(seconds)` run
first, longest first, and temp dirs are short."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

FAULTS = Path(__file__).parent / "faults"


def pytest_configure(config: pytest.Config) -> None:
    """A short temp root: a pipeline's ipc sockets live in its run dir, and a unix socket path
    holds about 100 bytes (parallel workers add `popen-gwN/` to every path)."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="hlt-")


def _long_seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("long")
    return float(marker.args[0]) if marker is not None else 0.0


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/faults as `faults`; refuse the marker anywhere else. Put
    the `long` tests first, longest first: parallel workers (one file each) then start the
    files that set the suite's length at once and end together (a stable sort keeps the
    rest in collection order)."""
    for item in items:
        in_faults = FAULTS in Path(item.path).parents
        if in_faults:
            item.add_marker(pytest.mark.faults)
        elif item.get_closest_marker("faults") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked faults: move it to tests/faults/")
    items.sort(key=_long_seconds, reverse=True)
