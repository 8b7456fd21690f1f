"""POST /api/chat/usage/personal-cap: a user's own daily cap, below the plan's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from ratelimits.errors import RateLimitExceeded
from ratelimits.models import PersonalSpendCap, RateLimitAuditEntry
from ratelimits.services import turn_allowed_check

from .helpers import spend

pytestmark = pytest.mark.usefixtures("frozen")

URL = "/api/chat/usage/personal-cap"


def test_setting_a_cap_applies_it_at_once(
    alice: Any, alice_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    # given: $0.40 spent today, under the FREE $1 limit
    spend(alice, daily=400_000, weekly=400_000)
    turn_allowed_check(user=alice)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(URL, {"daily_cap_microdollars": 400_000}, format="json")
    # then (usage read again: in production the service commits before the reply is built)
    assert response.status_code == 200
    assert response.json()["personal_daily_cap_microdollars"] == 400_000
    usage = alice_client.get("/api/chat/usage").json()
    assert usage["personal_cap"] == {"daily_cap_microdollars": 400_000, "reached": True}
    assert usage["daily"]["percent_used"] == 40.0  # against the plan, not the cap
    with pytest.raises(RateLimitExceeded):
        turn_allowed_check(user=alice)
    entry = RateLimitAuditEntry.objects.get(user=alice)
    assert (entry.action, entry.actor, entry.details) == (
        "SET_PERSONAL_CAP",
        alice,
        {"previous": None, "daily_cap_microdollars": 400_000},
    )


def test_null_removes_the_cap(alice: Any, alice_client: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    PersonalSpendCap.objects.create(user=alice, daily_cap_microdollars=100)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(URL, {"daily_cap_microdollars": None}, format="json")
    assert response.status_code == 200
    assert response.json()["personal_daily_cap_microdollars"] is None
    assert alice_client.get("/api/chat/usage").json()["personal_cap"] is None
    assert PersonalSpendCap.objects.filter(user=alice).count() == 0


@pytest.mark.parametrize("cap", [1_000_000, 1_000_001])
def test_a_cap_at_or_above_the_plan_limit_answers_400(alice: Any, alice_client: APIClient, cap: int) -> None:
    response = alice_client.post(URL, {"daily_cap_microdollars": cap}, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "Your personal daily cap must be below your plan's daily limit."},
    )
    assert PersonalSpendCap.objects.count() == 0
    assert RateLimitAuditEntry.objects.count() == 0


def test_any_positive_cap_is_accepted_on_an_unlimited_plan(
    alice: Any, alice_client: APIClient, set_override: Callable[..., Any]
) -> None:
    set_override(alice, daily=0, weekly=None)
    response = alice_client.post(URL, {"daily_cap_microdollars": 50_000_000}, format="json")
    assert response.status_code == 200
    assert PersonalSpendCap.objects.get(user=alice).daily_cap_microdollars == 50_000_000


@pytest.mark.parametrize("payload", [{}, {"daily_cap_microdollars": 0}, {"daily_cap_microdollars": "ten"}])
def test_invalid_input_answers_400(alice: Any, alice_client: APIClient, payload: dict[str, Any]) -> None:
    assert alice_client.post(URL, payload, format="json").status_code == 400
    assert PersonalSpendCap.objects.count() == 0


def test_the_account_page_card_renders(rf: Any, alice: Any) -> None:
    from django.template.loader import render_to_string

    request = rf.get("/account")
    request.user = alice
    html = render_to_string("ratelimits/_personal_cap.html", request=request)
    assert 'data-cap-url="/api/chat/usage/personal-cap"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "ratelimits/personal_cap.js" in html
