"""Django-cache keys billing owns or invalidates, and failure-tolerant helpers.

Cache failures never fail a write (SPEC §0.8): every helper here logs and moves on.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache

logger = logging.getLogger(__name__)

CONFIG_KEY = "billing:config"
CONFIG_TTL_S = 60
PRICE_AMOUNT_TTL_S = 300
PENDING_CHANGE_TTL_S = 30

_MISSING = object()


def price_amount_key(price_id: str) -> str:
    return f"billing:price_amount:{price_id}"


def pending_change_key(user_id: int) -> str:
    return f"billing:pending_change:{user_id}"


def ratelimits_tier_key(user_id: int) -> str:
    # Owned by ratelimits (SPEC §3); billing only deletes it, so the string is
    # spelled here rather than imported (billing never imports ratelimits).
    return f"ratelimits:tier:{user_id}"


def cache_get(key: str) -> Any:
    """The cached value, or ``MISSING`` when absent or the cache is down."""
    try:
        return cache.get(key, _MISSING)
    except Exception:
        logger.warning("Billing cache read failed", extra={"cache_key": key}, exc_info=True)
        return _MISSING


def cache_set(key: str, value: Any, ttl_s: int) -> None:
    try:
        cache.set(key, value, ttl_s)
    except Exception:
        logger.warning("Billing cache write failed", extra={"cache_key": key}, exc_info=True)


def cache_delete(*keys: str) -> None:
    try:
        cache.delete_many(list(keys))
    except Exception:
        logger.warning("Billing cache invalidation failed", extra={"cache_keys": list(keys)}, exc_info=True)


def is_missing(value: Any) -> bool:
    return value is _MISSING
