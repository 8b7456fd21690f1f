"""Spend windows rebuilt from the database when Redis comes back empty: a restart never
gives a user their spend back, and a reset is never undone by a rebuild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import redis
from django.conf import settings
from django.db import OperationalError

from ratelimits import redis_store
from ratelimits.errors import RateLimitExceeded
from ratelimits.models import DailySpend
from ratelimits.selectors import rate_limit_check, usage_status
from ratelimits.services import usage_record, usage_reset_by_staff

pytestmark = pytest.mark.django_db

FRIDAY = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # an ISO week from Monday 23 November
MONDAY = FRIDAY - timedelta(days=4)
NO_LIMIT_HIT = {"daily": 10**9, "weekly": 10**9}


def _redis_comes_back_empty() -> None:
    # The test's own app database on the suite's Redis (the broker lives in another one).
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def test_the_next_check_after_redis_lost_everything_sees_the_recorded_spend(alice: Any) -> None:
    # given: spend recorded on Monday and today
    usage_record(user=alice, microdollars=5_000, now=MONDAY)
    usage_record(user=alice, microdollars=12_024, now=FRIDAY)
    assert redis_store.read_spend(alice.pk, FRIDAY) == (12_024, 17_024)
    # when: Redis restarts without its data
    _redis_comes_back_empty()
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 0)
    # then: the next check counts the same spend, and refuses as it would have
    rate_limit_check(user=alice, now=FRIDAY, **NO_LIMIT_HIT)
    assert redis_store.read_spend(alice.pk, FRIDAY) == (12_024, 17_024)
    with pytest.raises(RateLimitExceeded) as refused:
        rate_limit_check(user=alice, daily=12_000, weekly=10**9, now=FRIDAY)
    assert refused.value.window == "daily"
    with pytest.raises(RateLimitExceeded) as refused:
        rate_limit_check(user=alice, daily=10**9, weekly=17_000, now=FRIDAY)
    assert refused.value.window == "weekly"


def test_the_rebuilt_windows_expire_with_their_windows(alice: Any) -> None:
    usage_record(user=alice, microdollars=700, now=FRIDAY)
    _redis_comes_back_empty()
    rate_limit_check(user=alice, now=FRIDAY, **NO_LIMIT_HIT)
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert client.ttl(redis_store.daily_key(alice.pk, FRIDAY)) == 9 * 3600  # to Saturday 00:00 UTC
    assert client.ttl(redis_store.weekly_key(alice.pk, FRIDAY)) == (2 * 24 + 9) * 3600  # to Monday 00:00 UTC


def test_spend_recorded_after_the_loss_and_before_the_check_is_counted_once(alice: Any) -> None:
    usage_record(user=alice, microdollars=500, now=FRIDAY)
    _redis_comes_back_empty()
    usage_record(user=alice, microdollars=300, now=FRIDAY)  # in Redis and in the database
    rate_limit_check(user=alice, now=FRIDAY, **NO_LIMIT_HIT)
    assert redis_store.read_spend(alice.pk, FRIDAY) == (800, 800)
    rate_limit_check(user=alice, now=FRIDAY, **NO_LIMIT_HIT)  # known now: no second rebuild
    assert redis_store.read_spend(alice.pk, FRIDAY) == (800, 800)


def test_a_user_without_any_recorded_spend_starts_at_zero(alice: Any) -> None:
    rate_limit_check(user=alice, now=FRIDAY, **NO_LIMIT_HIT)
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 0)
    assert redis.Redis.from_url(settings.REDIS_URL).exists(redis_store.known_key(alice.pk, FRIDAY)) == 1


def test_a_staff_reset_is_not_undone_by_a_rebuild(alice: Any, staff: Any) -> None:
    usage_record(user=alice, microdollars=900, now=FRIDAY)
    rate_limit_check(user=alice, now=FRIDAY, **NO_LIMIT_HIT)
    usage_reset_by_staff(user=alice, actor=staff, include_weekly=True, now=FRIDAY)
    rate_limit_check(user=alice, now=FRIDAY, **NO_LIMIT_HIT)
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 0)
    assert DailySpend.objects.get(user=alice).microdollars == 900  # the record keeps what was spent


def test_a_database_error_during_the_rebuild_leaves_the_check_open_and_rebuilds_later(alice: Any) -> None:
    usage_record(user=alice, microdollars=12_024, now=FRIDAY)
    _redis_comes_back_empty()
    with mock.patch(
        "ratelimits.selectors.spend_recorded", side_effect=OperationalError("the database system is starting up")
    ):
        rate_limit_check(user=alice, daily=12_000, weekly=10**9, now=FRIDAY)  # fails open: no refusal
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 0)
    with pytest.raises(RateLimitExceeded):
        rate_limit_check(user=alice, daily=12_000, weekly=10**9, now=FRIDAY)


def test_the_usage_read_after_redis_lost_everything_shows_the_recorded_spend(alice: Any) -> None:
    # given: spend recorded, then Redis restarts without its data
    usage_record(user=alice, microdollars=5_000, now=MONDAY)
    usage_record(user=alice, microdollars=12_024, now=FRIDAY)
    _redis_comes_back_empty()
    # when: the user opens their usage before any turn checks it
    status = usage_status(user=alice, now=FRIDAY)
    # then: it counts what the database recorded, and the windows are known again
    assert (status.daily.used, status.weekly.used) == (12_024, 17_024)
    assert redis_store.read_spend_known(alice.pk, FRIDAY) == (12_024, 17_024, True)
    assert usage_status(user=alice, now=FRIDAY).daily.used == 12_024
