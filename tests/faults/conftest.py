"""The fault suite: `make test-faults` (COPILOT_FAULTS=1); not part of `make test`.

It needs PostgreSQL 15's cluster tools (`pg_createcluster`) and root, and stops and
starts the database and Redis it created itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.stack import FaultStack, fault_stack_start, fault_stack_stop

collect_ignore_glob = [] if os.environ.get("COPILOT_FAULTS") == "1" else ["test_*.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[FaultStack]:
    stack = fault_stack_start()
    yield stack
    fault_stack_stop(stack)
