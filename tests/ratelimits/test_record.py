"""usage_record: both windows, clamping, Redis errors, the durable daily table."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any
from unittest import mock

import pytest
import redis

from ratelimits import redis_store
from ratelimits.models import DailySpend
from ratelimits.services import usage_record

from .helpers import FRIDAY

pytestmark = pytest.mark.usefixtures("frozen")


def test_a_cost_in_usd_is_recorded_exactly_to_both_windows(alice: Any, store: redis.Redis) -> None:
    # given: the engine's conversion of cost_usd=0.0123
    microdollars = round(0.0123 * 1_000_000)
    # when
    usage_record(user=alice, microdollars=microdollars)
    # then
    daily, weekly = redis_store.daily_key(alice.pk, FRIDAY), redis_store.weekly_key(alice.pk, FRIDAY)
    assert (store.get(daily), store.get(weekly)) == (b"12300", b"12300")
    assert store.ttl(daily) >= 1
    assert store.ttl(weekly) >= 1
    row = DailySpend.objects.get(user=alice)
    assert (row.date, row.microdollars, row.turn_count) == (date(2026, 4, 3), 12300, 1)


@pytest.mark.parametrize("microdollars", [0, -1, -12300])
def test_zero_or_negative_cost_makes_no_redis_call(alice: Any, microdollars: int) -> None:
    with mock.patch("ratelimits.redis_store.record_spend", side_effect=AssertionError("Redis was called")) as record:
        usage_record(user=alice, microdollars=microdollars)
    record.assert_not_called()
    assert DailySpend.objects.count() == 0


def test_turns_add_up_in_redis_and_in_the_daily_table(alice: Any, bob: Any) -> None:
    usage_record(user=alice, microdollars=100)
    usage_record(user=alice, microdollars=250)
    usage_record(user=bob, microdollars=7)
    assert redis_store.read_spend(alice.pk, FRIDAY) == (350, 350)
    assert redis_store.read_spend(bob.pk, FRIDAY) == (7, 7)
    row = DailySpend.objects.get(user=alice)
    assert (row.microdollars, row.turn_count) == (350, 2)


def test_spend_after_midnight_lands_in_a_new_day_and_the_same_week(alice: Any, store: redis.Redis) -> None:
    usage_record(user=alice, microdollars=100)
    saturday = datetime(2026, 4, 4, 0, 0, 1, tzinfo=UTC)
    usage_record(user=alice, microdollars=40, now=saturday)
    assert redis_store.read_spend(alice.pk, saturday) == (40, 140)
    assert list(DailySpend.objects.filter(user=alice).order_by("date").values_list("date", "microdollars")) == [
        (date(2026, 4, 3), 100),
        (date(2026, 4, 4), 40),
    ]


def test_a_redis_outage_is_logged_and_not_raised(
    alice: Any, dead_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ratelimits"):
        usage_record(user=alice, microdollars=12300)
    assert "Recording copilot spend: 12300 microdollars" in caplog.messages
    assert "Redis unavailable for recording cost usage (microdollars=12300)" in caplog.messages
    assert DailySpend.objects.get(user=alice).microdollars == 12300  # the durable history still counts it


def test_a_non_redis_error_propagates(alice: Any) -> None:
    with (
        mock.patch("ratelimits.redis_store.record_spend", side_effect=ValueError("bug")),
        pytest.raises(ValueError, match="bug"),
    ):
        usage_record(user=alice, microdollars=5)
