"""Django-cache keys of the limit resolution, and failure-tolerant helpers.

The limits behind a pre-turn check are read in one ``get_many`` (one Redis round
trip). Cache failures never fail a check or a write (SPEC §0.8): every helper
logs and moves on, and the caller reads the database instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

# SPEC §3. billing deletes this key by name when it changes a tier (billing/caching.py).
TIER_TTL_S = 300
TIER_LIMITS_KEY = "ratelimits:tier_limits"
TIER_LIMITS_TTL_S = 60
USER_LIMITS_TTL_S = 300


def tier_key(user_id: int) -> str:
    return f"ratelimits:tier:{user_id}"


def user_limits_key(user_id: int) -> str:
    """The user's override and personal cap (both nullable), as one entry."""
    return f"ratelimits:user_limits:{user_id}"


def cache_get_many(keys: list[str]) -> dict[str, Any]:
    """The cached entries that exist; ``{}`` when the cache is down."""
    try:
        return cache.get_many(keys)
    except Exception:  # any cache backend error: read the database instead
        logger.warning("Rate-limit cache read failed", extra={"cache_keys": keys}, exc_info=True)
        return {}


def cache_set(key: str, value: Any, ttl_s: int) -> None:
    try:
        cache.set(key, value, ttl_s)
    except Exception:
        logger.warning("Rate-limit cache write failed", extra={"cache_key": key}, exc_info=True)


def cache_delete(keys: Iterable[str]) -> None:
    key_list = list(keys)
    try:
        cache.delete_many(key_list)
    except Exception:
        logger.warning("Rate-limit cache invalidation failed", extra={"cache_keys": key_list}, exc_info=True)


def cache_delete_on_commit(*keys: str) -> None:
    """Delete after the surrounding transaction commits (at once outside one).

    Deleting before the commit would let a concurrent reader re-cache the old row.
    """
    transaction.on_commit(lambda: cache_delete(keys))
