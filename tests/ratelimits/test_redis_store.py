"""Window keys, expiries and the atomic blocks of ratelimits/redis_store.py, on the real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
import redis
import time_machine

from ratelimits import redis_store
from ratelimits.services import usage_record

from .helpers import FRIDAY


@contextmanager
def count_round_trips() -> Iterator[list[int]]:
    """Counts packets sent to Redis (a pipeline or a MGET is one)."""
    calls = [0]
    original = redis.connection.Connection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        calls[0] += 1
        original(self, command, check_health)

    with mock.patch.object(redis.connection.Connection, "send_packed_command", counting):
        yield calls


@pytest.mark.parametrize(
    ("_case", "now", "daily_key", "daily_reset", "weekly_key", "weekly_reset"),
    [
        (
            "friday afternoon",
            datetime(2026, 4, 3, 15, 30, tzinfo=UTC),
            "2026-04-03",
            datetime(2026, 4, 4, tzinfo=UTC),
            "2026-W14",
            datetime(2026, 4, 6, tzinfo=UTC),
        ),
        (
            "monday midnight resets seven days later",
            datetime(2026, 4, 6, 0, 0, 0, tzinfo=UTC),
            "2026-04-06",
            datetime(2026, 4, 7, tzinfo=UTC),
            "2026-W15",
            datetime(2026, 4, 13, tzinfo=UTC),
        ),
        (
            "iso year differs from calendar year",
            datetime(2027, 1, 1, 12, 0, tzinfo=UTC),
            "2027-01-01",
            datetime(2027, 1, 2, tzinfo=UTC),
            "2026-W53",
            datetime(2027, 1, 4, tzinfo=UTC),
        ),
    ],
)
def test_window_keys_and_resets(
    _case: str, now: datetime, daily_key: str, daily_reset: datetime, weekly_key: str, weekly_reset: datetime
) -> None:
    assert redis_store.daily_key(7, now) == f"copilot:cost:daily:7:{daily_key}"
    assert redis_store.weekly_key(7, now) == f"copilot:cost:weekly:7:{weekly_key}"
    assert redis_store.daily_reset_at(now) == daily_reset
    assert redis_store.weekly_reset_at(now) == weekly_reset


def test_recording_at_235959_expires_the_daily_key_in_one_second(alice: Any, store: redis.Redis) -> None:
    # given: Friday 23:59:59 UTC
    now = datetime(2026, 4, 3, 23, 59, 59, tzinfo=UTC)
    # when
    with time_machine.travel(now, tick=False):
        usage_record(user=alice, microdollars=700)
    # then
    daily = f"copilot:cost:daily:{alice.pk}:2026-04-03"
    weekly = f"copilot:cost:weekly:{alice.pk}:2026-W14"
    assert store.get(daily) == b"700"
    assert store.get(weekly) == b"700"
    assert store.ttl(daily) == 1
    assert store.ttl(weekly) == 2 * 86400 + 1  # until Monday 2026-04-06 00:00


def test_recording_on_sunday_235959_expires_both_keys_in_one_second(alice: Any, store: redis.Redis) -> None:
    # given: the last second of ISO week 2026-W14
    now = datetime(2026, 4, 5, 23, 59, 59, tzinfo=UTC)
    # when
    with time_machine.travel(now, tick=False):
        usage_record(user=alice, microdollars=5)
    # then
    assert store.ttl(f"copilot:cost:daily:{alice.pk}:2026-04-05") == 1
    assert store.ttl(f"copilot:cost:weekly:{alice.pk}:2026-W14") == 1


def test_ttl_is_never_below_one_second() -> None:
    end = datetime(2026, 4, 4, tzinfo=UTC)
    assert redis_store.ttl_until(end, datetime(2026, 4, 3, 23, 59, 59, 999_000, tzinfo=UTC)) == 1
    assert redis_store.ttl_until(end, end) == 1
    assert redis_store.ttl_until(end, datetime(2026, 4, 4, 0, 0, 5, tzinfo=UTC)) == 1


def test_the_check_reads_both_windows_in_one_round_trip(alice: Any, store: redis.Redis) -> None:
    # given
    redis_store.record_spend(alice.pk, 42, FRIDAY)
    store.ping()  # the connection exists already: no connect handshake is counted
    # when
    with count_round_trips() as calls:
        used = redis_store.read_spend(alice.pk, FRIDAY)
    # then
    assert used == (42, 42)
    assert calls == [1]


def test_recording_is_one_round_trip(alice: Any, store: redis.Redis) -> None:
    store.ping()
    with count_round_trips() as calls:
        redis_store.record_spend(alice.pk, 42, FRIDAY)
    assert calls == [1]
    assert redis_store.read_spend(alice.pk, FRIDAY) == (42, 42)


def test_counters_under_another_prefix_are_never_read(alice: Any, store: redis.Redis) -> None:
    # given: counters an older version kept (cents, other prefix)
    store.set(f"copilot:usage:daily:{alice.pk}:2026-04-03", 10**12)
    store.set(f"copilot:daily_cost:{alice.pk}:2026-04-03", 10**12)
    # when / then
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 0)


def test_reset_that_would_go_negative_leaves_weekly_at_zero_and_keeps_its_ttl(alice: Any, store: redis.Redis) -> None:
    # given: weekly spend below one day's limit
    store.set(redis_store.daily_key(alice.pk, FRIDAY), 900, ex=3000)
    store.set(redis_store.weekly_key(alice.pk, FRIDAY), 400, ex=5000)
    # when
    weekly = redis_store.reset_daily_window(alice.pk, 1000, FRIDAY)
    # then
    assert weekly == 0
    assert store.get(redis_store.daily_key(alice.pk, FRIDAY)) is None
    assert store.get(redis_store.weekly_key(alice.pk, FRIDAY)) == b"0"
    assert 4990 <= store.ttl(redis_store.weekly_key(alice.pk, FRIDAY)) <= 5000


def test_reset_decreases_weekly_by_one_days_limit(alice: Any, store: redis.Redis) -> None:
    store.set(redis_store.daily_key(alice.pk, FRIDAY), 1000, ex=3000)
    store.set(redis_store.weekly_key(alice.pk, FRIDAY), 3500, ex=5000)
    assert redis_store.reset_daily_window(alice.pk, 1000, FRIDAY) == 2500
    assert store.get(redis_store.weekly_key(alice.pk, FRIDAY)) == b"2500"


def test_reset_without_a_weekly_key_leaves_one_that_expires(alice: Any, store: redis.Redis) -> None:
    store.set(redis_store.daily_key(alice.pk, FRIDAY), 1000, ex=3000)
    redis_store.reset_daily_window(alice.pk, 1000, FRIDAY)
    assert store.get(redis_store.weekly_key(alice.pk, FRIDAY)) == b"0"
    assert store.ttl(redis_store.weekly_key(alice.pk, FRIDAY)) == redis_store.ttl_until(
        redis_store.weekly_reset_at(FRIDAY), FRIDAY
    )


def test_reset_lock_is_exclusive_and_released_only_by_its_holder(alice: Any, store: redis.Redis) -> None:
    # given
    token = redis_store.reset_lock_acquire(alice.pk)
    # when
    second = redis_store.reset_lock_acquire(alice.pk)
    redis_store.reset_lock_release(alice.pk, "someone-else")
    # then
    assert token is not None
    assert second is None
    assert store.ttl(redis_store.reset_lock_key(alice.pk)) == 10
    redis_store.reset_lock_release(alice.pk, token)
    assert store.exists(redis_store.reset_lock_key(alice.pk)) == 0


def test_reset_count_expires_at_midnight(alice: Any, store: redis.Redis) -> None:
    assert redis_store.reset_count_incr(alice.pk, FRIDAY) == 1
    assert redis_store.reset_count_incr(alice.pk, FRIDAY) == 2
    key = f"copilot:reset_count:{alice.pk}:2026-04-03"
    assert store.get(key) == b"2"
    assert store.ttl(key) == redis_store.ttl_until(datetime(2026, 4, 4, tzinfo=UTC), FRIDAY)
