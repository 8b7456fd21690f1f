"""GET /api/chat/usage: percentages and times only, never raw spend or limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from ratelimits.services import usage_record

from .helpers import FRIDAY, all_keys, spend

pytestmark = pytest.mark.usefixtures("frozen")


def test_usage_reports_percentages_and_reset_times(
    alice: Any, alice_client: APIClient, set_override: Callable[..., Any]
) -> None:
    # given
    set_override(alice, daily=10_000, weekly=50_000)
    spend(alice, daily=500, weekly=2000)
    # when
    response = alice_client.get("/api/chat/usage")
    # then
    assert response.status_code == 200
    assert response.json() == {
        "daily": {"percent_used": 5.0, "resets_at": "2026-04-04T00:00:00Z", "projected_exhaustion_at": None},
        "weekly": {"percent_used": 4.0, "resets_at": "2026-04-06T00:00:00Z", "projected_exhaustion_at": None},
        "tier": "FREE",
        "reset_cost": 500,
        "past_due": False,
        "personal_cap": None,
    }


def test_usage_never_contains_raw_spend_or_limits(
    alice: Any, alice_client: APIClient, set_override: Callable[..., Any]
) -> None:
    set_override(alice, daily=10_000, weekly=50_000)
    spend(alice, daily=1234, weekly=4321)
    body = alice_client.get("/api/chat/usage").json()
    assert all_keys(body).isdisjoint({"used", "limit", "daily_used", "weekly_used", "microdollars"})
    raw = str(body)
    for figure in ("1234", "4321", "10000", "50000"):
        assert figure not in raw


def test_spend_over_the_limit_reads_exactly_100(
    alice: Any, alice_client: APIClient, set_override: Callable[..., Any]
) -> None:
    set_override(alice, daily=10_000, weekly=50_000)
    spend(alice, daily=12_345, weekly=49_999)
    body = alice_client.get("/api/chat/usage").json()
    assert body["daily"]["percent_used"] == 100.0
    assert body["weekly"]["percent_used"] == 99.9  # 99.998 % is not exhausted, so never shown as 100


def test_an_unlimited_window_is_null(alice: Any, alice_client: APIClient, set_override: Callable[..., Any]) -> None:
    set_override(alice, daily=0, weekly=50_000)
    body = alice_client.get("/api/chat/usage").json()
    assert body["daily"] is None
    assert body["weekly"]["percent_used"] == 0.0


def test_with_redis_down_usage_is_zero_percent(
    alice: Any, alice_client: APIClient, set_override: Callable[..., Any], dead_redis_url: str
) -> None:
    set_override(alice, daily=10_000, weekly=50_000)
    response = alice_client.get("/api/chat/usage")
    assert response.status_code == 200
    assert (response.json()["daily"]["percent_used"], response.json()["weekly"]["percent_used"]) == (0.0, 0.0)


def test_usage_estimates_when_the_limit_will_be_reached_at_the_recent_pace(
    alice: Any, alice_client: APIClient, set_override: Callable[..., Any]
) -> None:
    # given: $0.30 at 13:10 and $0.30 at 14:50, and it is now 15:30 (limit $1 a day)
    set_override(alice, daily=1_000_000, weekly=0)
    usage_record(user=alice, microdollars=300_000, now=datetime(2026, 4, 3, 13, 10, tzinfo=UTC))
    usage_record(user=alice, microdollars=300_000, now=datetime(2026, 4, 3, 14, 50, tzinfo=UTC))
    # when
    body = alice_client.get("/api/chat/usage").json()
    # then: $0.60 over 2.5 h (since the 13:00 bucket) → the last $0.40 takes 1 h 40 m
    assert body["daily"]["projected_exhaustion_at"] == "2026-04-03T17:10:00Z"
    assert body["weekly"] is None


def test_no_estimate_when_the_pace_would_not_reach_the_limit_before_the_reset(
    alice: Any, alice_client: APIClient, set_override: Callable[..., Any]
) -> None:
    set_override(alice, daily=1_000_000, weekly=0)
    usage_record(user=alice, microdollars=10_000, now=FRIDAY)
    assert alice_client.get("/api/chat/usage").json()["daily"]["projected_exhaustion_at"] is None


def test_a_past_due_account_sees_its_tier_and_the_flag(
    alice: Any, alice_client: APIClient, set_tier: Callable[..., None]
) -> None:
    set_tier(alice, "PRO", past_due=True)
    body = alice_client.get("/api/chat/usage").json()
    assert (body["tier"], body["past_due"]) == ("PRO", True)


def test_reset_cost_is_zero_when_credits_are_off(alice_client: APIClient, settings: Any) -> None:
    settings.ENABLE_CREDIT = False
    assert alice_client.get("/api/chat/usage").json()["reset_cost"] == 0


def test_usage_needs_a_login(api_client: APIClient, db: Any) -> None:
    assert api_client.get("/api/chat/usage").status_code in (401, 403)
