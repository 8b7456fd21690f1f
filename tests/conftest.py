"""Shared fixtures: personas, API clients, real Redis isolation, real processes.

Personas (healthchecks style): alice owns the conversations and pays, bob is an
active free user, charlie has access to nothing of alice's.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from copilot_site.testing.llm_script import FakeLLMServer
from copilot_site.testing.processes import (
    ManagedProcess,
    database_url,
    process_env,
    start_celery_worker,
    start_daphne,
)
from tests.factories import UserFactory

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def _flush_app_redis() -> Iterator[None]:
    """Each test starts with an empty app database on the real Redis server."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.flushdb()
    client.close()


@pytest.fixture
def alice(db: Any) -> Any:
    return UserFactory(username="alice", email="alice@example.com")


@pytest.fixture
def bob(db: Any) -> Any:
    return UserFactory(username="bob", email="bob@example.com")


@pytest.fixture
def charlie(db: Any) -> Any:
    return UserFactory(username="charlie", email="charlie@example.com")


@pytest.fixture
def staff(db: Any) -> Any:
    return UserFactory(username="staff", email="staff@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def alice_client(alice: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def charlie_client(charlie: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(charlie)
    return client


@pytest.fixture(scope="session")
def test_database_url(django_db_setup: Any, django_db_blocker: Any) -> str:
    """DATABASE_URL of the test database, for processes the tests start."""
    from django.db import connection

    return database_url(connection.settings_dict)


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    """The project's scripted OpenAI/Anthropic-compatible server, over real HTTP."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="session")
def live_env(test_database_url: str, fake_llm: FakeLLMServer) -> dict[str, str]:
    """Environment of the processes tests start: test DB, test Redis, the scripted LLM."""
    return process_env(
        test_database_url,
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=fake_llm.base_url,
        COPILOT_LLM_PROVIDER="openai_compat",
        COPILOT_SSE_HEARTBEAT_S="1",
        COPILOT_WEB_FETCH_ALLOWED_HOSTS="127.0.0.1",
        COPILOT_DB_POOL=os.environ["COPILOT_PROCESS_DB_POOL"],
    )


@pytest.fixture(scope="session")
def celery_worker(live_env: dict[str, str]) -> Iterator[ManagedProcess]:
    """A real Celery worker process on the test database and the test Redis."""
    worker = start_celery_worker(live_env, ARTIFACTS / "logs")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def daphne_server(live_env: dict[str, str]) -> Iterator[str]:
    """A real daphne server; yields its base URL (http://127.0.0.1:PORT)."""
    server, port = start_daphne(live_env, ARTIFACTS / "logs")
    yield f"http://127.0.0.1:{port}"
    server.stop()


def pytest_sessionstart(session: pytest.Session) -> None:
    ARTIFACTS.mkdir(exist_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _close_async_db_connections(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Close connections other threads opened, so PostgreSQL can drop the test database."""
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    with django_db_blocker.unblock():
        asyncio.run(sync_to_async(connections.close_all)())
        connection = connections["default"]
        if connection.vendor == "postgresql":
            # Threads of in-process engine runs may still hold a connection; PostgreSQL
            # will not drop a database that is in use.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            connection.close()


@pytest.fixture
def slow_http() -> Iterator[str]:
    """A loopback page that answers after 3 s: the target of a slow `web_fetch` tool call."""

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(3)
            body = b"slow page body"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow"
    server.shutdown()
