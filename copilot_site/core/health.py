"""Liveness checks behind `GET /healthz`: database, Redis, a Celery worker.

Each check returns "ok" or a short error string and is bounded by a ~1 s timeout,
so a dead dependency makes the endpoint answer 503 quickly instead of hanging.
"""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection

HEALTH_TIMEOUT_S = 1.0


def _describe(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {exc}"[:300]


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        return _describe(exc)
    return "ok"


def check_redis() -> str:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=HEALTH_TIMEOUT_S, socket_timeout=HEALTH_TIMEOUT_S
    )
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        return _describe(exc)
    finally:
        client.close()
    return "ok"


def check_worker() -> str:
    """Broadcast a ping through the broker; any worker that answers within 1 s counts."""
    from copilot_site.celery_app import app

    try:
        with app.connection_for_write() as conn:
            # Without a bound, kombu would retry a dead broker forever.
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=int(HEALTH_TIMEOUT_S))
            replies = app.control.ping(timeout=HEALTH_TIMEOUT_S, connection=conn)
    except Exception as exc:  # noqa: BLE001
        return _describe(exc)
    if not replies:
        return "error: no worker replied within 1s"
    return "ok"
