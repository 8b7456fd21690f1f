"""The failure-tolerant cache helpers: a cache outage reads as a miss and never raises."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.cache import cache

from copilot_site.core.caching import cache_delete, cache_get, cache_get_many, cache_set, is_missing

DOWN = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}


def test_with_the_cache_up_the_helpers_read_and_write_it() -> None:
    # when
    cache_set("core:test:a", {"n": 1}, 60)
    cache_set("core:test:b", 2, 60)
    # then
    assert cache_get("core:test:a") == {"n": 1}
    assert cache_get_many(["core:test:a", "core:test:b", "core:test:none"]) == {
        "core:test:a": {"n": 1},
        "core:test:b": 2,
    }
    assert is_missing(cache_get("core:test:none")) is True
    cache_delete("core:test:a", "core:test:b")
    assert cache.get_many(["core:test:a", "core:test:b"]) == {}


def test_with_the_cache_down_every_helper_logs_and_answers_a_miss(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    settings.CACHES = DOWN
    # when
    with caplog.at_level(logging.WARNING, logger="copilot_site.core.caching"):
        value = cache_get("core:test:a")
        many = cache_get_many(["core:test:a"])
        cache_set("core:test:a", 1, 60)
        cache_delete("core:test:a")
    # then
    assert (is_missing(value), many) == (True, {})
    assert caplog.messages == [
        "Cache read failed",
        "Cache read failed",
        "Cache write failed",
        "Cache invalidation failed",
    ]
