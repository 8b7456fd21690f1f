"""PostgreSQL connections stay bounded by the pools, whatever the number of live turns.

Each process (daphne, every Celery worker) has one psycopg pool of at most
COPILOT_DB_POOL_MAX connections; a live turn's stream and its waiting task thread
hold none. Runs on PostgreSQL only (CI runs the suite with a PostgreSQL
DATABASE_URL); SQLite has no connections to count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil
import pytest
from django.conf import settings
from django.db import connection

from copilot_site.celery_app import app
from copilot_site.testing.processes import ManagedProcess, start_celery_worker
from tests.chat.turns.helpers import SseResult, fake, person, read_sse
from tests.conftest import ARTIFACTS

TURNS = 30
CHUNKS = 40
CHUNK_DELAY_MS = 250  # 10 s of streaming per turn: every turn is live at once for a while
TOTAL_BOUND = 20

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="counts PostgreSQL connections: run with DATABASE_URL=postgres://… (CI does)",
    ),
]


@pytest.fixture(scope="module")
def wide_worker(live_env: dict[str, str]) -> Iterator[ManagedProcess]:
    """A worker with far more task threads than its pool has connections: a thread for
    each turn and one for each turn's title, all at once."""
    worker = start_celery_worker(live_env, ARTIFACTS / "logs", concurrency=2 * TURNS + 2, name="worker-wide")
    yield worker
    worker.stop()


def _own_client_ports() -> list[int]:
    """Local ports of this test process's own connections to PostgreSQL (not counted)."""
    port = int(connection.settings_dict.get("PORT") or 5432)
    return [c.laddr.port for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port]


def _server_connections() -> int:
    """Connections to the test database, but this test process's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND NOT (client_port = ANY(%s))",
            [_own_client_ports()],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def _live(results: list[SseResult]) -> int:
    """Turns that streamed text and have not finished."""
    return sum(1 for r in results if "text-delta" in r.types and "finish" not in r.types)


def test_thirty_live_turns_stay_within_the_db_pools(
    daphne_server: str, wide_worker: ManagedProcess, fake_llm: Any, live_env: dict[str, str]
) -> None:
    # given: the web and worker processes run with the pool, as in production (the test
    # process itself does not: see copilot_site.testing.pytest_plugin)
    fake_llm.reset()
    assert live_env["COPILOT_DB_POOL"] == "1"
    workers = len(app.control.ping(timeout=1.0) or [])  # this module's, and the suite's when it runs
    assert workers in (1, 2)
    bound = settings.COPILOT_DB_POOL_MAX * (1 + workers)  # one daphne, `workers` workers
    if workers == 1:
        assert bound <= TOTAL_BOUND
    people = [person(f"user{i}") for i in range(TURNS)]
    message = "Count " + fake({"chunks": CHUNKS, "delay_ms": CHUNK_DELAY_MS})
    results = [SseResult(0, {}) for _ in people]
    readers = [
        threading.Thread(
            target=read_sse,
            args=("POST", f"{daphne_server}/api/chat/sessions/{p.session.id}/stream"),
            kwargs={"headers": p.headers, "json_body": {"message": message}, "timeout": 120, "into": result},
            daemon=True,
        )
        for p, result in zip(people, results, strict=True)
    ]
    seen: list[int] = []
    most_live = 0
    # when
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 120
    while any(reader.is_alive() for reader in readers) and time.monotonic() < deadline:
        most_live = max(most_live, _live(results))
        seen.append(_server_connections())
        time.sleep(0.05)
    for reader in readers:
        reader.join(timeout=1)
    # then
    print(f"most connections seen: {max(seen)} (bound {bound}); most turns live at once: {most_live}")
    assert not any(reader.is_alive() for reader in readers)
    assert most_live == TURNS
    assert max(seen) <= bound
    expected = "".join(f"tok{i} " for i in range(CHUNKS))
    assert [r.status for r in results] == [200] * TURNS
    assert [r.text() for r in results] == [expected] * TURNS
    assert [r.types[-1] for r in results] == ["finish"] * TURNS
    assert all(r.done for r in results)


def _terminate_other_connections() -> int:
    """Ends every connection to the test database but this test process's own, as a
    database restart does; the pools' idle connections are dead afterwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND NOT (client_port = ANY(%s))",
            [_own_client_ports()],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def test_requests_after_the_pools_connections_died_are_answered(daphne_server: str) -> None:
    # given: daphne's pool grew to its maximum for a burst of concurrent requests
    alice = person("alice")
    url = f"{daphne_server}/api/chat/sessions/{alice.session.id}"
    burst = 4 * settings.COPILOT_DB_POOL_MAX
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=burst)) as client:
        with ThreadPoolExecutor(max_workers=burst) as pool:
            warm = list(pool.map(lambda _: client.get(url, headers=alice.headers).status_code, range(burst)))
        assert warm == [200] * burst
        # when: the server ends all their connections, as a restart of the database does
        assert _terminate_other_connections() >= 3
        # then: the first dead connection makes the pool drop all of them, and every
        # request is answered (none spends the pool wait on dead ones and gets the 503)
        statuses = [client.get(url, headers=alice.headers).status_code for _ in range(settings.COPILOT_DB_POOL_MAX)]
    assert statuses == [200] * settings.COPILOT_DB_POOL_MAX
