"""Failure-tolerant access to the Django cache (Redis).

A cache outage never fails a request, a check or a write: every helper logs a
warning and answers as if the entry were absent, and the caller reads the
database instead. Deleting after commit keeps a concurrent reader from
re-caching the row the transaction is about to replace.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

_MISSING = object()


def cache_get(key: str) -> Any:
    """The cached value, or the ``is_missing`` sentinel when absent or the cache is down."""
    try:
        return cache.get(key, _MISSING)
    except Exception:  # any cache backend error: the caller reads the database
        logger.warning("Cache read failed", extra={"cache_key": key}, exc_info=True)
        return _MISSING


def is_missing(value: Any) -> bool:
    return value is _MISSING


def cache_get_many(keys: list[str]) -> dict[str, Any]:
    """The cached entries that exist (one round trip); ``{}`` when the cache is down."""
    try:
        return cache.get_many(keys)
    except Exception:  # any cache backend error: the caller reads the database
        logger.warning("Cache read failed", extra={"cache_keys": keys}, exc_info=True)
        return {}


def cache_set(key: str, value: Any, ttl_s: int) -> None:
    try:
        cache.set(key, value, ttl_s)
    except Exception:
        logger.warning("Cache write failed", extra={"cache_key": key}, exc_info=True)


def cache_delete(*keys: str) -> None:
    key_list = list(keys)
    try:
        cache.delete_many(key_list)
    except Exception:
        logger.warning("Cache invalidation failed", extra={"cache_keys": key_list}, exc_info=True)


def cache_delete_on_commit(*keys: str) -> None:
    """Delete after the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: cache_delete(*keys))
