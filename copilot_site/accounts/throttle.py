"""Failures counted per client address in Redis: bearer keys, and signups refused for a taken name.

API keys are 256-bit random strings, so guessing one is hopeless; the counter is
there to make a scan of stolen or leaked key lists slow and visible. Past
``COPILOT_API_KEY_FAILURE_LIMIT`` failures within ``COPILOT_API_KEY_FAILURE_WINDOW_S``
(counted from the first failure) every bearer request from that address is refused,
valid key or not, until the window ends. Signups refused because the username or
e-mail address is taken are counted the same way (``COPILOT_SIGNUP_REFUSAL_LIMIT`` per
``COPILOT_SIGNUP_REFUSAL_WINDOW_S``), so probing which names exist is slow. When Redis is
down nothing is counted and nothing is refused (fail open): the checks themselves
still hold.
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


def _key(scope: str, client_ip: str) -> str:
    return f"copilot:failures:{scope}:{client_ip}"


def failure_retry_after(*, scope: str, client_ip: str, limit: int) -> int | None:
    """Seconds until `client_ip` is let through again for `scope`, or None when it is not held back."""
    key = _key(scope, client_ip)
    try:
        pipe = _client(settings.REDIS_URL).pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = pipe.execute()
    except redis.RedisError:
        logger.warning("Failure counter unavailable; not throttling %s %s", scope, client_ip, exc_info=True)
        return None
    if count is None or int(count) < limit:
        return None
    return max(int(ttl), 1)


def failure_record(*, scope: str, client_ip: str, window_s: int) -> None:
    """Count one failure; the window starts at the first one."""
    key = _key(scope, client_ip)
    try:
        pipe = _client(settings.REDIS_URL).pipeline(transaction=True)
        pipe.set(key, 0, ex=window_s, nx=True)
        pipe.incr(key)
        pipe.execute()
    except redis.RedisError:
        logger.warning("Failure counter unavailable; not counting %s %s", scope, client_ip, exc_info=True)


def api_key_failure_retry_after(*, client_ip: str) -> int | None:
    return failure_retry_after(scope="apikey", client_ip=client_ip, limit=settings.COPILOT_API_KEY_FAILURE_LIMIT)


def api_key_failure_record(*, client_ip: str) -> None:
    failure_record(scope="apikey", client_ip=client_ip, window_s=settings.COPILOT_API_KEY_FAILURE_WINDOW_S)


def signup_refusal_retry_after(*, client_ip: str) -> int | None:
    return failure_retry_after(scope="signup", client_ip=client_ip, limit=settings.COPILOT_SIGNUP_REFUSAL_LIMIT)


def signup_refusal_record(*, client_ip: str) -> None:
    failure_record(scope="signup", client_ip=client_ip, window_s=settings.COPILOT_SIGNUP_REFUSAL_WINDOW_S)
