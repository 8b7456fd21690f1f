"""Failed `Authorization: Bearer` attempts, counted per client address in Redis.

API keys are 256-bit random strings, so guessing one is hopeless; the counter is
there to make a scan of stolen or leaked key lists slow and visible. Past
``COPILOT_API_KEY_FAILURE_LIMIT`` failures within ``COPILOT_API_KEY_FAILURE_WINDOW_S``
(counted from the first failure) every bearer request from that address is refused,
valid key or not, until the window ends. When Redis is down nothing is counted and
nothing is refused (fail open): the key check itself still guards the API.
"""

from __future__ import annotations

import functools
import logging

import redis
from django.conf import settings

logger = logging.getLogger(__name__)


@functools.cache
def _client(url: str) -> redis.Redis[bytes]:
    # Short timeouts and no retries: a dead Redis must cost a request little.
    pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
    return redis.Redis(connection_pool=pool)


def _key(client_ip: str) -> str:
    return f"copilot:apikey-failures:{client_ip}"


def api_key_failure_retry_after(*, client_ip: str) -> int | None:
    """Seconds until `client_ip` may try a bearer key again, or None when it is not locked out."""
    try:
        pipe = _client(settings.REDIS_URL).pipeline(transaction=False)
        pipe.get(_key(client_ip))
        pipe.ttl(_key(client_ip))
        count, ttl = pipe.execute()
    except redis.RedisError:
        logger.warning("API key failure counter unavailable; not throttling %s", client_ip, exc_info=True)
        return None
    if count is None or int(count) < settings.COPILOT_API_KEY_FAILURE_LIMIT:
        return None
    return max(int(ttl), 1)


def api_key_failure_record(*, client_ip: str) -> None:
    """Count one failed bearer attempt; the window starts at the first failure."""
    try:
        pipe = _client(settings.REDIS_URL).pipeline(transaction=True)
        pipe.set(_key(client_ip), 0, ex=settings.COPILOT_API_KEY_FAILURE_WINDOW_S, nx=True)
        pipe.incr(_key(client_ip))
        pipe.execute()
    except redis.RedisError:
        logger.warning("API key failure counter unavailable; not counting %s", client_ip, exc_info=True)
