"""A daphne + Celery worker pair with tools that ask first, for the approval tests.

The suite's shared worker runs with the default settings (no tool asks), so these
tests start their own pair on a private broker database (the shared worker never sees
their turns): ``calculator`` always asks, ``get_current_time`` costs 3 credit cents
(it asks only a user whose threshold is below that), and an unanswered approval
expires after ``APPROVAL_TIMEOUT_S``, twice the stream idle timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from copilot_site.testing.processes import start_celery_worker, start_daphne
from copilot_site.testing.pytest_plugin import BROKER_DB
from tests.conftest import ARTIFACTS

APPROVAL_TIMEOUT_S = 4
IDLE_TIMEOUT_S = 2
CLOCK_COST_CENTS = 3
APPROVAL_ENV = {
    "COPILOT_TOOLS_REQUIRING_APPROVAL": json.dumps(["calculator"]),
    "COPILOT_APPROVAL_TIMEOUT_S": str(APPROVAL_TIMEOUT_S),
    "COPILOT_TOOL_COST_CENTS": json.dumps({"get_current_time": CLOCK_COST_CENTS}),
    # Shorter than the approval timeout: a turn that only waits for its user must not be
    # ended as idle (the wait keeps it alive).
    "COPILOT_STREAM_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
}


def broker_url() -> str:
    return os.environ["COPILOT_TEST_REDIS_BASE"].rsplit("/", 1)[0] + f"/{BROKER_DB + 4}"


def approval_worker_settled(timeout: float = 20) -> None:
    """Wait (bounded) until this pair's worker runs nothing: a turn's tail or a title being
    written while the test database is flushed can deadlock the flush (as the suite's
    `worker_settled` does for the shared worker)."""
    from copilot_site.celery_app import app

    deadline = time.monotonic() + timeout
    with app.connection_for_write(broker_url()) as connection:
        while time.monotonic() < deadline:
            inspect = app.control.inspect(timeout=0.5, connection=connection)
            with contextlib.suppress(Exception):
                replies = [inspect.active(), inspect.reserved()]
                if all(not reply or not any(reply.values()) for reply in replies):
                    return
            time.sleep(0.2)


@contextmanager
def approval_stack(live_env: dict[str, str], *, name: str) -> Iterator[str]:
    """Start the pair; yields the web process's base URL."""
    broker = broker_url()
    redis.Redis.from_url(broker).flushdb()
    env = {**live_env, **APPROVAL_ENV, "CELERY_BROKER_URL": broker}
    web, port = start_daphne(env, ARTIFACTS / "logs")
    try:
        worker = start_celery_worker(env, ARTIFACTS / "logs", name=name, concurrency=4)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            worker.stop()
    finally:
        web.stop()
