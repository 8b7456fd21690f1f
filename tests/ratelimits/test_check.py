"""The pre-turn check: equality blocks, daily before weekly, unlimited, fail open, texts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest

from billing.models import Tier
from copilot_site.core.exceptions import api_exception_handler
from ratelimits.errors import RateLimitExceeded
from ratelimits.health import fail_open_stats
from ratelimits.selectors import rate_limit_check
from ratelimits.services import turn_allowed_check

from .helpers import FRIDAY, spend

pytestmark = pytest.mark.usefixtures("frozen")


def test_spend_exactly_at_the_daily_limit_blocks(alice: Any, set_override: Callable[..., Any]) -> None:
    # given
    set_override(alice, daily=1000, weekly=0)
    spend(alice, daily=1000)
    # when
    with pytest.raises(RateLimitExceeded) as raised:
        turn_allowed_check(user=alice)
    # then
    assert raised.value.window == "daily"
    assert raised.value.resets_at == datetime(2026, 4, 4, tzinfo=UTC)
    assert raised.value.detail == "You've reached your daily usage limit. Resets in 8h 30m."
    assert raised.value.status == 429


def test_spend_just_below_the_limit_is_allowed(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=1000, weekly=5000)
    spend(alice, daily=999, weekly=999)
    turn_allowed_check(user=alice)  # no exception


def test_daily_is_checked_before_weekly(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=1000, weekly=2000)
    spend(alice, daily=5000, weekly=5000)
    with pytest.raises(RateLimitExceeded) as raised:
        turn_allowed_check(user=alice)
    assert raised.value.window == "daily"


def test_the_weekly_limit_blocks_until_monday(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=1000, weekly=2000)
    spend(alice, daily=10, weekly=2000)
    with pytest.raises(RateLimitExceeded) as raised:
        turn_allowed_check(user=alice)
    assert (raised.value.window, raised.value.resets_at) == ("weekly", datetime(2026, 4, 6, tzinfo=UTC))
    assert raised.value.detail == "You've reached your weekly usage limit. Resets in 56h 30m."


def test_limits_of_zero_make_no_redis_call(alice: Any, set_override: Callable[..., Any]) -> None:
    # given
    set_override(alice, daily=0, weekly=0)
    # when
    with mock.patch("ratelimits.redis_store.read_spend", side_effect=AssertionError("Redis was called")) as read:
        turn_allowed_check(user=alice)
        rate_limit_check(user=alice, daily=0, weekly=0)
    # then
    read.assert_not_called()


def test_a_zero_daily_limit_still_enforces_the_weekly_one(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=0, weekly=100)
    spend(alice, daily=10**9, weekly=100)
    with pytest.raises(RateLimitExceeded) as raised:
        turn_allowed_check(user=alice)
    assert raised.value.window == "weekly"


def test_an_override_beats_the_tier(
    alice: Any, set_tier: Callable[..., None], set_override: Callable[..., Any]
) -> None:
    # given: ENTERPRISE would allow $60 a day, the override only $0.01
    set_tier(alice, Tier.ENTERPRISE)
    set_override(alice, daily=10_000, weekly=None)
    spend(alice, daily=10_000, weekly=10_000)
    # when / then
    with pytest.raises(RateLimitExceeded):
        turn_allowed_check(user=alice)


def test_a_tier_change_takes_effect_at_once(alice: Any, staff: Any, django_capture_on_commit_callbacks: Any) -> None:
    from ratelimits.services import user_tier_set

    # given: FREE, at its $1 limit, and the tier is cached by the refused check
    spend(alice, daily=1_000_000, weekly=1_000_000)
    with pytest.raises(RateLimitExceeded):
        turn_allowed_check(user=alice)
    # when
    with django_capture_on_commit_callbacks(execute=True), mock.patch("billing.tasks.subscription_drift_check.delay"):
        user_tier_set(user=alice, tier=Tier.PRO, actor=staff, reason="upgrade")
    # then
    turn_allowed_check(user=alice)


def test_redis_down_lets_the_turn_through_and_counts_it(
    alice: Any, set_override: Callable[..., Any], dead_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    set_override(alice, daily=1, weekly=1)
    before = fail_open_stats().count
    # when
    with caplog.at_level(logging.WARNING, logger="ratelimits"):
        turn_allowed_check(user=alice)
    # then
    assert "Redis unavailable for rate limit check, allowing request" in caplog.messages
    assert fail_open_stats().count == before + 1
    assert fail_open_stats().last_at == FRIDAY


def test_a_personal_cap_blocks_with_its_own_text(alice: Any, django_capture_on_commit_callbacks: Any) -> None:
    from ratelimits.models import PersonalSpendCap

    with django_capture_on_commit_callbacks(execute=True):
        PersonalSpendCap.objects.create(user=alice, daily_cap_microdollars=300_000)
    spend(alice, daily=300_000, weekly=300_000)
    with pytest.raises(RateLimitExceeded) as raised:
        turn_allowed_check(user=alice)
    assert raised.value.detail == "You've reached the personal daily spending cap you set. Resets in 8h 30m."
    assert raised.value.extra == {"window": "daily", "resets_at": "2026-04-04T00:00:00Z", "personal_cap": True}


@pytest.mark.parametrize(
    ("_case", "until_reset", "text"),
    [
        ("hours and minutes", timedelta(hours=2, minutes=30), "Resets in 2h 30m."),
        ("minutes only, no 0h", timedelta(minutes=15, seconds=59), "Resets in 15m."),
        ("exactly now", timedelta(0), "Resets in now."),
        ("in the past", timedelta(seconds=-5), "Resets in now."),
        ("under a minute", timedelta(seconds=30), "Resets in 0m."),
    ],
)
def test_the_exceeded_text_formats_the_remaining_time(_case: str, until_reset: timedelta, text: str) -> None:
    exc = RateLimitExceeded("daily", FRIDAY + until_reset, now=FRIDAY)
    assert exc.detail == f"You've reached your daily usage limit. {text}"


def test_the_api_answers_429_with_detail_window_and_resets_at() -> None:
    exc = RateLimitExceeded("weekly", datetime(2026, 4, 6, tzinfo=UTC), now=FRIDAY)
    response = api_exception_handler(exc, {})
    assert response is not None
    assert response.status_code == 429
    assert response.data == {
        "detail": "You've reached your weekly usage limit. Resets in 56h 30m.",
        "window": "weekly",
        "resets_at": "2026-04-06T00:00:00Z",
    }
