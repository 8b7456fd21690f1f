"""The billing POST bodies take their redirect URLs as JSON strings only.

DRF's own `CharField` would turn `{"success_url": 5}` into `"5"`; these refuse it with a
400 naming the field, before Stripe is called or a checkout is recorded.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from billing.models import CheckoutRecord, CustomerAccount, Tier
from tests.billing.conftest import FRONTEND, FakeStripe

pytestmark = pytest.mark.django_db

URLS = {"success_url": f"{FRONTEND}/billing?ok=1", "cancel_url": f"{FRONTEND}/billing"}
NOT_A_STRING = ["Not a valid string."]


@pytest.mark.parametrize("field", ["success_url", "cancel_url"])
@pytest.mark.parametrize("value", [5, 12.5, True, ["https://app.example.com/"], {"url": "x"}])
def test_top_up_refuses_a_url_that_is_not_a_string(
    fake_stripe: FakeStripe, alice_client: APIClient, field: str, value: Any
) -> None:
    # when
    response = alice_client.post("/api/billing/credits/top-up", {"amount": 2500, **URLS, field: value}, format="json")
    # then
    assert response.status_code == 400
    assert response.json() == {field: NOT_A_STRING}
    assert fake_stripe.calls() == []
    assert not CheckoutRecord.objects.exists()


@pytest.mark.parametrize("field", ["success_url", "cancel_url"])
@pytest.mark.parametrize("value", [5, 12.5, False])
def test_subscription_change_refuses_a_url_that_is_not_a_string(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, field: str, value: Any
) -> None:
    # when
    response = alice_client.post("/api/billing/subscription", {"tier": Tier.PRO, **URLS, field: value}, format="json")
    # then
    assert response.status_code == 400
    assert response.json() == {field: NOT_A_STRING}
    assert fake_stripe.calls() == []
    assert not CheckoutRecord.objects.exists()
    assert not CustomerAccount.objects.filter(user=alice, tier=Tier.PRO).exists()


def test_top_up_with_string_urls_still_opens_a_checkout(fake_stripe: FakeStripe, alice_client: APIClient) -> None:
    response = alice_client.post("/api/billing/credits/top-up", {"amount": 2500, **URLS}, format="json")
    assert response.status_code == 200
    assert response.json()["url"].startswith(fake_stripe.base_url)
    assert CheckoutRecord.objects.count() == 1
