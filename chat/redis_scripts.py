"""Chat's Redis access: the connection, key names, and (later) every Lua script and
MULTI/EXEC block of the app. Everything else calls these functions.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

import redis
from django.conf import settings

logger = logging.getLogger(__name__)


@functools.cache
def _pool(url: str) -> redis.ConnectionPool:
    return redis.ConnectionPool.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)


def redis_client() -> redis.Redis[bytes]:
    return redis.Redis(connection_pool=_pool(settings.REDIS_URL))


def turn_meta_key(session_id: object) -> str:
    return f"copilot:turn:meta:{session_id}"


def turn_statuses(session_ids: Iterable[object]) -> dict[str, bool]:
    """`turn_in_flight` for many sessions in one pipeline; every one False on a Redis error."""
    ids = [str(s) for s in session_ids]
    if not ids:
        return {}
    try:
        pipe = redis_client().pipeline(transaction=False)
        for session_id in ids:
            pipe.hget(turn_meta_key(session_id), "status")
        statuses = pipe.execute()
    except redis.RedisError:
        logger.warning("Redis unavailable reading turn statuses; reporting no turn in flight")
        return dict.fromkeys(ids, False)
    return {sid: status == b"running" for sid, status in zip(ids, statuses, strict=True)}
