"""Staff rate-limit API: raw microdollars, reset, tier; staff only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import redis
from rest_framework.test import APIClient

from billing.models import CustomerAccount, TierChange
from ratelimits import redis_store
from ratelimits.models import RateLimitAuditEntry

from .helpers import FRIDAY, spend

pytestmark = pytest.mark.usefixtures("frozen")


@pytest.fixture
def staff_client(staff: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff)
    return client


def test_staff_see_raw_figures_by_id_and_by_email(
    alice: Any, staff_client: APIClient, set_override: Callable[..., Any]
) -> None:
    # given
    set_override(alice, daily=None, weekly=7_000_000)
    spend(alice, daily=123_456, weekly=654_321)
    expected = {
        "user_id": alice.pk,
        "user_email": "alice@example.com",
        "tier": "FREE",
        "past_due": False,
        "daily_cost_limit_microdollars": 1_000_000,
        "weekly_cost_limit_microdollars": 7_000_000,
        "daily_cost_used_microdollars": 123_456,
        "weekly_cost_used_microdollars": 654_321,
        "personal_daily_cap_microdollars": None,
        "redis_available": True,
    }
    # when
    by_id = staff_client.get(f"/api/admin/users/{alice.pk}/rate-limit")
    by_email = staff_client.get("/api/admin/users/ALICE@example.com/rate-limit")
    # then
    assert by_id.status_code == 200
    body = by_id.json()
    override = body.pop("override")
    assert body == expected
    assert (override["daily_limit_microdollars"], override["weekly_limit_microdollars"]) == (None, 7_000_000)
    assert by_email.json()["user_id"] == alice.pk


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("get", "rate-limit", None),
        ("post", "rate-limit/reset", {"reset_weekly": True}),
        ("post", "tier", {"tier": "PRO"}),
    ],
)
def test_non_staff_get_403_and_change_nothing(
    alice: Any, alice_client: APIClient, method: str, path: str, payload: Any
) -> None:
    spend(alice, daily=10, weekly=10)
    response = getattr(alice_client, method)(f"/api/admin/users/{alice.pk}/{path}", payload, format="json")
    assert response.status_code == 403
    assert redis_store.read_spend(alice.pk, FRIDAY) == (10, 10)
    assert CustomerAccount.objects.filter(user=alice, tier="PRO").count() == 0
    assert RateLimitAuditEntry.objects.count() == 0


@pytest.mark.parametrize("reference", ["-1", "999999", "nobody@example.com"])
@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [("get", "rate-limit", None), ("post", "rate-limit/reset", {}), ("post", "tier", {"tier": "PRO"})],
)
def test_unknown_users_answer_404(
    staff_client: APIClient, reference: str, method: str, path: str, payload: Any
) -> None:
    response = getattr(staff_client, method)(f"/api/admin/users/{reference}/{path}", payload, format="json")
    assert (response.status_code, response.json()) == (404, {"detail": "User not found."})
    assert RateLimitAuditEntry.objects.count() == 0


def test_reset_clears_the_daily_window_only(alice: Any, staff: Any, staff_client: APIClient) -> None:
    spend(alice, daily=999, weekly=5000)
    response = staff_client.post(
        f"/api/admin/users/{alice.pk}/rate-limit/reset", {"reason": "support #12"}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["daily_cost_used_microdollars"], response.json()["weekly_cost_used_microdollars"]) == (
        0,
        5000,
    )
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 5000)
    entry = RateLimitAuditEntry.objects.get(user=alice)
    assert (entry.action, entry.actor, entry.reason) == ("RESET_DAILY", staff, "support #12")


def test_reset_weekly_clears_both_windows(alice: Any, staff: Any, staff_client: APIClient) -> None:
    spend(alice, daily=999, weekly=5000)
    response = staff_client.post(f"/api/admin/users/{alice.pk}/rate-limit/reset", {"reset_weekly": True}, format="json")
    assert response.status_code == 200
    assert redis_store.read_spend(alice.pk, FRIDAY) == (0, 0)
    assert RateLimitAuditEntry.objects.get(user=alice).action == "RESET_WEEKLY"


def test_a_redis_error_during_reset_answers_500(alice: Any, staff_client: APIClient) -> None:
    spend(alice, daily=999, weekly=5000)
    with mock.patch("ratelimits.redis_store.delete_windows", side_effect=redis.ConnectionError("down")):
        response = staff_client.post(f"/api/admin/users/{alice.pk}/rate-limit/reset", {}, format="json")
    assert (response.status_code, response.json()) == (500, {"detail": "Failed to reset usage"})
    assert redis_store.read_spend(alice.pk, FRIDAY) == (999, 5000)
    assert RateLimitAuditEntry.objects.count() == 0


def test_setting_the_tier_applies_its_limits_at_once(
    alice: Any, staff: Any, staff_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    # given: FREE limits are cached
    assert (
        staff_client.get(f"/api/admin/users/{alice.pk}/rate-limit").json()["daily_cost_limit_microdollars"] == 1_000_000
    )
    # when
    with django_capture_on_commit_callbacks(execute=True), mock.patch("billing.tasks.subscription_drift_check.delay"):
        response = staff_client.post(
            f"/api/admin/users/{alice.email}/tier", {"tier": "BUSINESS", "reason": "partner"}, format="json"
        )
    # then (read again: in production the service commits before the reply is built)
    assert response.status_code == 200
    after = staff_client.get(f"/api/admin/users/{alice.pk}/rate-limit").json()
    assert (after["tier"], after["daily_cost_limit_microdollars"]) == ("BUSINESS", 20_000_000)
    assert CustomerAccount.objects.get(user=alice).tier == "BUSINESS"
    change = TierChange.objects.get(user=alice)
    assert (change.previous_tier, change.tier, change.actor) == ("FREE", "BUSINESS", staff)
    entry = RateLimitAuditEntry.objects.get(user=alice)
    assert (entry.action, entry.actor, entry.reason, entry.details) == (
        "SET_TIER",
        staff,
        "partner",
        {"previous": "FREE", "tier": "BUSINESS"},
    )


@pytest.mark.parametrize("payload", [{}, {"tier": "GOLD"}, {"tier": ""}])
def test_an_invalid_tier_answers_400(alice: Any, staff_client: APIClient, payload: dict[str, Any]) -> None:
    response = staff_client.post(f"/api/admin/users/{alice.pk}/tier", payload, format="json")
    assert response.status_code == 400
    assert CustomerAccount.objects.filter(user=alice).exclude(tier="FREE").count() == 0
    assert RateLimitAuditEntry.objects.count() == 0


@pytest.mark.parametrize("reference", ["²", "١٢", "99999999999999999999999"])
def test_a_reference_of_non_ascii_or_huge_digits_answers_404_not_500(
    alice: Any, staff_client: APIClient, reference: str
) -> None:
    # `"²".isdigit()` is true but `int("²")` raises: the schema-driven fuzz's class of 500.
    response = staff_client.get(f"/api/admin/users/{reference}/rate-limit")
    assert (response.status_code, response.json()) == (404, {"detail": "User not found."})
    assert RateLimitAuditEntry.objects.count() == 0
