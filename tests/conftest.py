"""Test suite configuration: the `faults` folder and the `faults` marker hold the same tests
(`make test` leaves them out; `make test-faults` runs them), and temp dirs are short."""

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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/faults as `faults`; refuse the marker anywhere else."""
    for item in items:
        in_faults = FAULTS in Path(item.path).parents
        if in_faults:
            item.add_marker(pytest.mark.faults)
        elif item.get_closest_marker("faults") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked faults: move it to tests/faults/")
