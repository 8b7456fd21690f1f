from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from copilot_site.core.embedded_redis import free_port, start_redis, stop_process


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_healthz_is_ok_with_database_redis_and_a_worker(celery_worker: Any) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "redis": "ok", "worker": "ok"}


@pytest.mark.django_db
def test_healthz_reports_a_stopped_redis_with_503(settings: Any) -> None:
    # given: a real redis-server that was running and has been stopped
    port = free_port()
    process = start_redis(port, Path(tempfile.mkdtemp(prefix="copilot-stopped-redis-")))
    stop_process(process)
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/1"
    from copilot_site.celery_app import app

    original = app.conf.broker_url
    app.conf.broker_url = settings.CELERY_BROKER_URL
    try:
        # when
        response = Client().get("/healthz")
    finally:
        app.conf.broker_url = original
    # then
    body = response.json()
    assert response.status_code == 503
    assert body["database"] == "ok"
    assert body["redis"].startswith("error: ConnectionError")
    assert body["worker"].startswith("error: ")
    assert sorted(body) == ["database", "redis", "worker"]


@pytest.mark.django_db
def test_healthz_reports_no_worker_with_503(settings: Any) -> None:
    # given: Redis is up but nothing consumes the broker (a db no worker listens on)
    from copilot_site.celery_app import app

    original = app.conf.broker_url
    app.conf.broker_url = original.rsplit("/", 1)[0] + "/12"
    try:
        response = Client().get("/healthz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "redis": "ok", "worker": "error: no worker replied within 1s"}
