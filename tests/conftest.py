"""Test suite configuration: the `faults` folder and the `faults` marker hold the same tests
(`make test` leaves them out; `make test-faults` runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

FAULTS = Path(__file__).parent / "faults"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/faults as `faults`; refuse the marker anywhere else."""
    for item in items:
        in_faults = FAULTS in Path(item.path).parents
        if in_faults:
            item.add_marker(pytest.mark.faults)
        elif item.get_closest_marker("faults") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked faults: move it to tests/faults/")
