"""Rate-limit fixtures: the store's Redis client, limits, frozen time, a dead Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import time_machine

from billing.models import CustomerAccount
from copilot_site.core.embedded_redis import free_port, start_redis, stop_process
from ratelimits import redis_store
from ratelimits.models import UserLimitOverride

from .helpers import FRIDAY


@pytest.fixture
def store() -> redis.Redis:
    return redis_store.redis_client()


@pytest.fixture
def frozen() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(FRIDAY, tick=False) as traveller:
        yield traveller


@pytest.fixture
def set_override(django_capture_on_commit_callbacks: Any) -> Callable[..., UserLimitOverride]:
    """Give a user exact limits (microdollars) through an override row; the cache follows at once."""

    def make(user: Any, daily: int | None, weekly: int | None) -> UserLimitOverride:
        with django_capture_on_commit_callbacks(execute=True):
            override, _ = UserLimitOverride.objects.update_or_create(
                user=user,
                defaults={"daily_limit_microdollars": daily, "weekly_limit_microdollars": weekly, "reason": "test"},
            )
        return override

    return make


@pytest.fixture
def set_tier(django_capture_on_commit_callbacks: Any) -> Callable[..., None]:
    """Put the user on a tier directly in billing's table (and drop the tier cache)."""

    def make(user: Any, tier: str, *, past_due: bool = False) -> None:
        from copilot_site.core.caching import cache_delete
        from ratelimits.caching import tier_key

        CustomerAccount.objects.update_or_create(
            user=user, defaults={"tier": tier, "payment_failed_at": FRIDAY if past_due else None}
        )
        cache_delete(tier_key(user.pk))

    return make


@pytest.fixture
def dead_redis_url(settings: Any, tmp_path: Path) -> str:
    """Point REDIS_URL (the rate limiter's connection) at a redis-server that was started and
    then stopped. The suite's own server keeps running; Django's cache stays on it."""
    port = free_port()
    process = start_redis(port, tmp_path / "dead-redis")
    url = f"redis://127.0.0.1:{port}/0"
    assert redis.Redis.from_url(url).ping()
    stop_process(process)
    settings.REDIS_URL = url  # pytest-django's `settings` fixture restores it after the test
    return url
