"""Loaded with `-p copilot_site.testing.pytest_plugin`, before Django settings are read.

Gives the suite a real Redis server: REDIS_URL when set (CI points it at the
machine's server), otherwise an embedded redis-server started here and stopped
at the end of the run. Tests use their own database numbers on that server: the
app's data (cache, channel layer, turn logs, counters) in one, the Celery broker
in another, so flushing app data between tests never deletes broker bindings.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

APP_DB = int(os.environ.get("COPILOT_TEST_REDIS_DB", "9"))
BROKER_DB = APP_DB + 1

_embedded: subprocess.Popen[bytes] | None = None


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    global _embedded
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "copilot_site.settings.test")
    base = os.environ.get("REDIS_URL")
    if not base:
        from copilot_site.core.embedded_redis import free_port, start_redis

        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="copilot-test-redis-"))
        _embedded = start_redis(port, workdir)
        base = f"redis://127.0.0.1:{port}/0"
    os.environ["COPILOT_TEST_REDIS_BASE"] = base
    # A SQLite test database of this run's own: concurrent runs never share one file.
    os.environ.setdefault(
        "COPILOT_TEST_DB_NAME", str(Path(tempfile.mkdtemp(prefix="copilot-test-db-")) / "test_db.sqlite3")
    )
    # Uploaded files of this run's own (the pytest process and the processes it starts share it).
    os.environ.setdefault("COPILOT_ATTACHMENTS_ROOT", tempfile.mkdtemp(prefix="copilot-test-attachments-"))
    # Metric files of this run's own processes (see copilot_site.core.metrics).
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="copilot-test-metrics-"))
    # The pytest process itself runs without a PostgreSQL pool: its many short-lived test
    # threads (sync_to_async, live servers) each keep a connection until the test ends, so a
    # pool of production size runs dry. The processes the tests start (daphne, workers) get
    # the setting as given (`live_env`), pool on by default, as in production.
    os.environ.setdefault("COPILOT_PROCESS_DB_POOL", os.environ.get("COPILOT_DB_POOL", "1"))
    os.environ["COPILOT_DB_POOL"] = "0"
    os.environ["REDIS_URL"] = _with_db(base, APP_DB)
    if not os.environ.get("CELERY_BROKER_URL"):
        os.environ["CELERY_BROKER_URL"] = _with_db(base, BROKER_DB)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _embedded is not None:
        from copilot_site.core.embedded_redis import stop_process

        stop_process(_embedded)
