"""Limit resolution: tier rows, overrides, past-due accounts, caching and invalidation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import DatabaseError

from billing.models import CustomerAccount, Tier
from ratelimits.models import TierLimit
from ratelimits.selectors import limits_get, limits_resolve, user_tier_get


@pytest.mark.parametrize(
    ("tier", "multiplier"),
    [(Tier.FREE, 1), (Tier.PRO, 5), (Tier.BUSINESS, 20), (Tier.ENTERPRISE, 60)],
)
def test_seeded_tiers_give_one_five_twenty_sixty_times_the_base(
    alice: Any, set_tier: Callable[..., None], tier: str, multiplier: int
) -> None:
    # given
    set_tier(alice, tier)
    # when / then
    assert limits_get(user=alice) == (1_000_000 * multiplier, 5_000_000 * multiplier, tier)


def test_a_tier_without_a_row_falls_back_to_the_settings_base(
    alice: Any, set_tier: Callable[..., None], settings: Any
) -> None:
    # given
    settings.COPILOT_DAILY_COST_LIMIT_MICRODOLLARS = 2_500_000
    settings.COPILOT_WEEKLY_COST_LIMIT_MICRODOLLARS = 12_500_000
    TierLimit.objects.filter(tier=Tier.BUSINESS).delete()
    set_tier(alice, Tier.BUSINESS)
    # when / then
    assert limits_get(user=alice) == (50_000_000, 250_000_000, Tier.BUSINESS)


def test_a_user_without_a_billing_account_is_free(alice: Any) -> None:
    assert limits_get(user=alice) == (1_000_000, 5_000_000, Tier.FREE)


def test_a_failed_tier_lookup_gives_free_uncached_and_the_next_call_retries(
    alice: Any, set_tier: Callable[..., None]
) -> None:
    # given
    set_tier(alice, Tier.PRO)
    # when
    with mock.patch("ratelimits.selectors.account_get_for_user", side_effect=DatabaseError("db down")):
        failed = user_tier_get(user=alice)
    cached_after_failure = cache.get(f"ratelimits:tier:{alice.pk}")
    retried = user_tier_get(user=alice)
    # then
    assert failed == Tier.FREE
    assert cached_after_failure is None
    assert retried == Tier.PRO
    assert cache.get(f"ratelimits:tier:{alice.pk}") == {"tier": Tier.PRO, "past_due": False}


def test_an_invalid_tier_value_gives_free_uncached(alice: Any) -> None:
    CustomerAccount.objects.create(user=alice, tier="GOLD")
    assert user_tier_get(user=alice) == Tier.FREE
    assert cache.get(f"ratelimits:tier:{alice.pk}") is None


def test_the_tier_lookup_is_cached(alice: Any, set_tier: Callable[..., None]) -> None:
    # given
    set_tier(alice, Tier.PRO)
    limits_get(user=alice)
    # when: the row changes behind the cache's back (no invalidation)
    CustomerAccount.objects.filter(user=alice).update(tier=Tier.BUSINESS)
    # then
    assert user_tier_get(user=alice) == Tier.PRO


def test_an_override_replaces_the_tier_per_window(
    alice: Any, set_tier: Callable[..., None], set_override: Callable[..., Any]
) -> None:
    # given
    set_tier(alice, Tier.PRO)
    set_override(alice, daily=123, weekly=None)
    # when / then: daily from the override, weekly still PRO's
    assert limits_get(user=alice) == (123, 25_000_000, Tier.PRO)


def test_an_override_of_zero_means_unlimited(alice: Any, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=0, weekly=0)
    assert limits_get(user=alice) == (0, 0, Tier.FREE)


def test_a_past_due_account_gets_free_limits_but_keeps_its_tier(alice: Any, set_tier: Callable[..., None]) -> None:
    set_tier(alice, Tier.BUSINESS, past_due=True)
    limits = limits_resolve(user=alice)
    assert (limits.daily, limits.weekly, limits.tier, limits.past_due) == (1_000_000, 5_000_000, Tier.BUSINESS, True)


def test_an_override_still_applies_to_a_past_due_account(
    alice: Any, set_tier: Callable[..., None], set_override: Callable[..., Any]
) -> None:
    set_tier(alice, Tier.PRO, past_due=True)
    set_override(alice, daily=7_000_000, weekly=None)
    assert limits_get(user=alice) == (7_000_000, 5_000_000, Tier.PRO)


def test_editing_a_tier_row_applies_on_commit(alice: Any, django_capture_on_commit_callbacks: Any) -> None:
    # given: the tier table is cached
    assert limits_get(user=alice)[0] == 1_000_000
    row = TierLimit.objects.get(tier=Tier.FREE)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        row.daily_limit_microdollars = 2_000_000
        row.save()
    # then
    assert limits_get(user=alice)[0] == 2_000_000


def test_removing_an_override_applies_on_commit(
    alice: Any, set_override: Callable[..., Any], django_capture_on_commit_callbacks: Any
) -> None:
    override = set_override(alice, daily=10, weekly=20)
    assert limits_get(user=alice)[:2] == (10, 20)
    with django_capture_on_commit_callbacks(execute=True):
        override.delete()
    assert limits_get(user=alice)[:2] == (1_000_000, 5_000_000)


def test_limits_resolve_from_the_database_when_the_cache_is_down(
    alice: Any, set_tier: Callable[..., None], set_override: Callable[..., Any], settings: Any
) -> None:
    # given
    set_tier(alice, Tier.PRO)
    set_override(alice, daily=None, weekly=99_000_000)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    # when / then
    assert limits_get(user=alice) == (5_000_000, 99_000_000, Tier.PRO)


def test_a_personal_cap_lowers_only_the_daily_limit(alice: Any, django_capture_on_commit_callbacks: Any) -> None:
    from ratelimits.models import PersonalSpendCap

    with django_capture_on_commit_callbacks(execute=True):
        PersonalSpendCap.objects.create(user=alice, daily_cap_microdollars=250_000)
    limits = limits_resolve(user=alice)
    assert (limits.daily, limits.weekly, limits.account_daily) == (250_000, 5_000_000, 1_000_000)
    assert limits.personal_cap_binds is True


def test_a_personal_cap_above_the_plan_limit_changes_nothing(
    alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from ratelimits.models import PersonalSpendCap

    with django_capture_on_commit_callbacks(execute=True):
        PersonalSpendCap.objects.create(user=alice, daily_cap_microdollars=3_000_000)
    limits = limits_resolve(user=alice)
    assert (limits.daily, limits.personal_cap_binds) == (1_000_000, False)
