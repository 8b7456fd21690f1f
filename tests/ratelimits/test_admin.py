"""Django admin: smoke tests, the per-user usage page, and actions that go through services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from billing.models import CustomerAccount
from ratelimits import redis_store
from ratelimits.models import DailySpend, RateLimitAuditEntry, TierLimit, UserLimitOverride
from ratelimits.services import usage_record, usage_reset_by_staff

from .helpers import FRIDAY, spend

pytestmark = pytest.mark.usefixtures("frozen")


def usage_url(user: Any, action: str = "") -> str:
    return f"/admin/ratelimits/dailyspend/user/{user.pk}/" + (f"{action}/" if action else "")


@pytest.mark.parametrize(
    "path",
    [
        "/admin/ratelimits/tierlimit/",
        "/admin/ratelimits/tierlimit/1/change/",
        "/admin/ratelimits/userlimitoverride/",
        "/admin/ratelimits/userlimitoverride/add/",
        "/admin/ratelimits/userlimitoverride/?q=alice",
        "/admin/ratelimits/dailyspend/",
        "/admin/ratelimits/dailyspend/?q=alice",
        "/admin/ratelimits/personalspendcap/",
        "/admin/ratelimits/ratelimitauditentry/",
    ],
)
def test_admin_pages_render(admin_client: Client, alice: Any, path: str) -> None:
    usage_record(user=alice, microdollars=1000)
    UserLimitOverride.objects.create(user=alice, daily_limit_microdollars=5, reason="test")
    assert admin_client.get(path).status_code == 200


def test_the_usage_page_shows_dollars_limits_and_the_30_day_chart(
    admin_client: Client, alice: Any, set_override: Callable[..., Any]
) -> None:
    # given
    set_override(alice, daily=None, weekly=8_000_000)
    usage_record(user=alice, microdollars=1_234_567)
    DailySpend.objects.create(user=alice, date=FRIDAY.date().replace(day=1), microdollars=250_000, turn_count=3)
    # when
    response = admin_client.get(usage_url(alice))
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert '<td data-testid="used">$1.23</td>' in html
    assert '<td data-testid="limit">$1.00</td>' in html
    assert '<td data-testid="limit">$8.00</td>' in html
    assert '<strong data-testid="tier">FREE</strong>' in html
    assert "<svg" in html
    assert html.count('class="bar"') == 30
    assert "<title>2026-04-03: $1.23 (1 turn)</title>" in html
    assert "<title>2026-04-01: $0.25 (3 turns)</title>" in html
    assert "daily limit $1.00" in html


def test_the_lookup_redirects_to_the_usage_page(admin_client: Client, alice: Any) -> None:
    response = admin_client.get("/admin/ratelimits/dailyspend/user/?q=alice@example.com")
    assert (response.status_code, response["Location"]) == (302, usage_url(alice))
    missing = admin_client.get("/admin/ratelimits/dailyspend/user/?q=nobody@example.com")
    assert missing["Location"] == "/admin/ratelimits/dailyspend/"


def test_reset_daily_action_goes_through_the_service_and_audits(
    admin_client: Client, admin_user: Any, alice: Any
) -> None:
    spend(alice, daily=900, weekly=900)
    with mock.patch("ratelimits.admin.usage_reset_by_staff", wraps=usage_reset_by_staff) as service:
        response = admin_client.post(usage_url(alice, "reset-daily"), {"reason": "ticket 7"})
    assert (response.status_code, response["Location"]) == (302, usage_url(alice))
    service.assert_called_once_with(user=alice, actor=admin_user, include_weekly=False, reason="ticket 7")
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 900)
    entry = RateLimitAuditEntry.objects.get(user=alice)
    assert (entry.action, entry.actor, entry.reason) == ("RESET_DAILY", admin_user, "ticket 7")


def test_reset_weekly_action_clears_both_windows(admin_client: Client, admin_user: Any, alice: Any) -> None:
    spend(alice, daily=900, weekly=900)
    admin_client.post(usage_url(alice, "reset-weekly"), {"reason": ""})
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 0)
    assert RateLimitAuditEntry.objects.get(user=alice).action == "RESET_WEEKLY"


def test_set_tier_action(admin_client: Client, admin_user: Any, alice: Any) -> None:
    with mock.patch("billing.tasks.subscription_drift_check.delay"):
        response = admin_client.post(usage_url(alice, "set-tier"), {"tier": "PRO", "reason": "beta tester"})
    assert response.status_code == 302
    assert CustomerAccount.objects.get(user=alice).tier == "PRO"
    entry = RateLimitAuditEntry.objects.get(user=alice)
    assert (entry.action, entry.actor, entry.reason, entry.details) == (
        "SET_TIER",
        admin_user,
        "beta tester",
        {"previous": "FREE", "tier": "PRO"},
    )


def test_set_tier_without_a_reason_changes_nothing(admin_client: Client, alice: Any) -> None:
    response = admin_client.post(usage_url(alice, "set-tier"), {"tier": "PRO", "reason": ""})
    assert response.status_code == 200  # the page again, with the form's error
    assert "This field is required." in response.content.decode()
    assert CustomerAccount.objects.filter(user=alice, tier="PRO").count() == 0
    assert RateLimitAuditEntry.objects.count() == 0


def test_set_override_action_in_dollars(admin_client: Client, admin_user: Any, alice: Any) -> None:
    response = admin_client.post(
        usage_url(alice, "set-override"), {"daily_dollars": "2.50", "weekly_dollars": "", "reason": "conference"}
    )
    assert response.status_code == 302
    override = UserLimitOverride.objects.get(user=alice)
    assert (override.daily_limit_microdollars, override.weekly_limit_microdollars, override.set_by) == (
        2_500_000,
        None,
        admin_user,
    )
    entry = RateLimitAuditEntry.objects.get(user=alice)
    assert (entry.action, entry.reason, entry.details["daily_limit_microdollars"]) == (
        "SET_OVERRIDE",
        "conference",
        2_500_000,
    )


def test_an_override_with_weekly_below_daily_is_refused(admin_client: Client, alice: Any) -> None:
    response = admin_client.post(
        usage_url(alice, "set-override"), {"daily_dollars": "5", "weekly_dollars": "1", "reason": "typo"}
    )
    assert response.status_code == 200
    assert "The weekly limit must be at least the daily limit." in response.content.decode()
    assert UserLimitOverride.objects.count() == 0
    assert RateLimitAuditEntry.objects.count() == 0


def test_empty_override_removes_it(admin_client: Client, admin_user: Any, alice: Any) -> None:
    UserLimitOverride.objects.create(user=alice, daily_limit_microdollars=5, reason="old")
    admin_client.post(usage_url(alice, "set-override"), {"daily_dollars": "", "weekly_dollars": "", "reason": "done"})
    assert UserLimitOverride.objects.count() == 0
    assert RateLimitAuditEntry.objects.get(user=alice).action == "CLEAR_OVERRIDE"


def test_staff_without_the_permission_cannot_act(client: Client, alice: Any, django_user_model: Any) -> None:
    viewer = django_user_model.objects.create_user("viewer", "viewer@example.com", "pw", is_staff=True)
    client.force_login(viewer)
    spend(alice, daily=900)
    assert client.post(usage_url(alice, "reset-daily"), {"reason": ""}).status_code == 403
    assert redis_store.read_spend(alice.pk, FRIDAY) == (900, 0)


def test_editing_a_tier_limit_in_the_admin_audits_it(admin_client: Client, admin_user: Any) -> None:
    row = TierLimit.objects.get(tier="PRO")
    response = admin_client.post(
        f"/admin/ratelimits/tierlimit/{row.pk}/change/",
        {"daily_limit_microdollars": 6_000_000, "weekly_limit_microdollars": 30_000_000, "change_reason": "promo"},
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.daily_limit_microdollars, row.weekly_limit_microdollars) == (6_000_000, 30_000_000)
    entry = RateLimitAuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.user, entry.reason) == ("SET_TIER_LIMIT", admin_user, None, "promo")
    assert entry.details["previous"] == {"daily_limit_microdollars": 5_000_000, "weekly_limit_microdollars": 25_000_000}


def test_a_tier_limit_with_weekly_below_daily_is_refused(admin_client: Client) -> None:
    row = TierLimit.objects.get(tier="PRO")
    response = admin_client.post(
        f"/admin/ratelimits/tierlimit/{row.pk}/change/",
        {"daily_limit_microdollars": 6_000_000, "weekly_limit_microdollars": 1_000_000, "change_reason": ""},
    )
    assert response.status_code == 200
    assert "The weekly limit must be at least the daily limit." in response.content.decode()
    row.refresh_from_db()
    assert row.daily_limit_microdollars == 5_000_000
    assert RateLimitAuditEntry.objects.count() == 0


def test_adding_and_deleting_an_override_in_the_admin_audits_both(
    admin_client: Client, admin_user: Any, alice: Any
) -> None:
    response = admin_client.post(
        "/admin/ratelimits/userlimitoverride/add/",
        {"user": alice.pk, "daily_limit_microdollars": "", "weekly_limit_microdollars": 9_000_000, "reason": "trial"},
    )
    assert response.status_code == 302
    override = UserLimitOverride.objects.get(user=alice)
    assert override.set_by == admin_user
    admin_client.post(f"/admin/ratelimits/userlimitoverride/{override.pk}/delete/", {"post": "yes"})
    assert UserLimitOverride.objects.count() == 0
    assert list(RateLimitAuditEntry.objects.order_by("pk").values_list("action", flat=True)) == [
        "SET_OVERRIDE",
        "CLEAR_OVERRIDE",
    ]


def test_an_override_with_no_window_is_refused_in_the_admin(admin_client: Client, alice: Any) -> None:
    response = admin_client.post(
        "/admin/ratelimits/userlimitoverride/add/",
        {"user": alice.pk, "daily_limit_microdollars": "", "weekly_limit_microdollars": "", "reason": "empty"},
    )
    assert response.status_code == 200
    assert "Set a daily or a weekly limit (or delete the override)." in response.content.decode()
    assert UserLimitOverride.objects.count() == 0
