"""Helpers shared by the rate-limit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ratelimits import redis_store

# A Friday afternoon: daily window 2026-04-03, ISO week 2026-W14 (Mon 30 Mar – Sun 5 Apr).
FRIDAY = datetime(2026, 4, 3, 15, 30, tzinfo=UTC)


def spend(user: Any, *, daily: int = 0, weekly: int = 0, now: datetime = FRIDAY) -> None:
    """Set the user's raw counters (with the TTLs recording would give them)."""
    client = redis_store.redis_client()
    if daily:
        client.set(
            redis_store.daily_key(user.pk, now), daily, ex=redis_store.ttl_until(redis_store.daily_reset_at(now), now)
        )
    if weekly:
        client.set(
            redis_store.weekly_key(user.pk, now),
            weekly,
            ex=redis_store.ttl_until(redis_store.weekly_reset_at(now), now),
        )


def all_keys(payload: Any) -> set[str]:
    """Every key anywhere in a JSON payload."""
    if isinstance(payload, dict):
        keys = set(payload)
        for value in payload.values():
            keys |= all_keys(value)
        return keys
    if isinstance(payload, list):
        return set().union(*(all_keys(item) for item in payload)) if payload else set()
    return set()
