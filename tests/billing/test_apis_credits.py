"""``GET /api/billing/credits`` and ``POST /api/billing/credits/top-up``."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from billing.models import CheckoutRecord, CreditTransaction
from billing.services import credits_grant, credits_spend
from tests.billing.conftest import FRONTEND, FakeStripe

pytestmark = pytest.mark.django_db

URLS = {"success_url": f"{FRONTEND}/billing?topup=ok", "cancel_url": f"{FRONTEND}/billing"}
CHECKOUT_FAILED = "Unable to start checkout right now. Please try again or contact support."


def _top_up(client: APIClient, amount: Any = 2500, **overrides: Any) -> Any:
    return client.post("/api/billing/credits/top-up", {"amount": amount, **URLS, **overrides}, format="json")


def test_credits_lists_the_balance_and_own_transactions_newest_first(
    alice: Any, charlie: Any, alice_client: APIClient, django_assert_num_queries: Any
) -> None:
    # given
    credits_grant(user=alice, amount_cents=1000, idempotency_key="g1", reason="welcome")
    credits_spend(user=alice, amount_cents=150, idempotency_key="tool:t:1", reason="web_search")
    credits_grant(user=charlie, amount_cents=999, idempotency_key="g2", reason="not alice's")
    # when
    with django_assert_num_queries(3):  # balance, page, count
        response = alice_client.get("/api/billing/credits")
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["balance"], body["total"], body["enabled"], body["limit"], body["offset"]) == (850, 2, True, 50, 0)
    assert [(t["kind"], t["amount_cents"], t["balance_after_cents"], t["reason"]) for t in body["transactions"]] == [
        ("USAGE", -150, 850, "web_search"),
        ("GRANT", 1000, 1000, "welcome"),
    ]


def test_credits_paginates(alice: Any, alice_client: APIClient) -> None:
    for i in range(5):
        credits_grant(user=alice, amount_cents=10 + i, idempotency_key=f"g{i}", reason=f"r{i}")
    body = alice_client.get("/api/billing/credits?limit=2&offset=1").json()
    assert (body["total"], body["balance"]) == (5, 60)
    assert [t["reason"] for t in body["transactions"]] == ["r3", "r2"]


def test_credits_reports_when_the_credit_system_is_off(settings: Any, alice_client: APIClient) -> None:
    settings.ENABLE_CREDIT = False
    assert alice_client.get("/api/billing/credits").json()["enabled"] is False


def test_credits_for_a_new_user_is_zero(bob: Any) -> None:
    client = APIClient()
    client.force_authenticate(bob)
    body = client.get("/api/billing/credits").json()
    assert (body["balance"], body["transactions"], body["total"]) == (0, [], 0)


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "limit=x"])
def test_credits_rejects_bad_pagination(alice_client: APIClient, query: str) -> None:
    assert alice_client.get(f"/api/billing/credits?{query}").status_code == 400


def test_credits_needs_authentication(api_client: APIClient) -> None:
    assert api_client.get("/api/billing/credits").status_code in (401, 403)
    assert _top_up(api_client).status_code in (401, 403)


def test_top_up_opens_a_payment_checkout_and_grants_nothing_yet(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # when
    response = _top_up(alice_client, 2500)
    # then
    assert response.status_code == 200
    record = CheckoutRecord.objects.get()
    assert response.json() == {"url": f"{fake_stripe.base_url}/checkout/{record.stripe_checkout_session_id}"}
    assert (record.kind, record.amount_cents, record.status) == (
        CheckoutRecord.Kind.TOP_UP,
        2500,
        CheckoutRecord.Status.OPEN,
    )
    creates = [r for r in fake_stripe.requests() if r["method"] == "POST"]
    assert [(r["path"], r["idempotency_key"]) for r in creates] == [
        ("/v1/customers", f"customer-create-{alice.pk}"),
        ("/v1/checkout/sessions", f"checkout-create-{record.pk}"),
    ]
    params = creates[1]["params"]
    assert params["mode"] == "payment"
    assert params["line_items"] == [
        {
            "price_data": {"currency": "usd", "unit_amount": "2500", "product_data": {"name": "Copilot credits"}},
            "quantity": "1",
        }
    ]
    assert params["metadata"] == {
        "user_id": str(alice.pk),
        "kind": "credit_top_up",
        "checkout_record_id": str(record.pk),
    }
    assert params["payment_intent_data"] == {"metadata": params["metadata"]}
    assert not CreditTransaction.objects.exists()


def test_a_second_top_up_reuses_the_stripe_customer(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    _top_up(alice_client)
    mark = fake_stripe.mark()
    _top_up(alice_client)
    assert fake_stripe.calls_since(mark) == ["POST /v1/checkout/sessions"]


@pytest.mark.parametrize(("_case", "amount"), [("below minimum", 499), ("above maximum", 100_001)])
def test_top_up_amount_out_of_range_is_422(
    fake_stripe: FakeStripe, alice_client: APIClient, _case: str, amount: int
) -> None:
    response = _top_up(alice_client, amount)
    assert response.status_code == 422
    assert response.json() == {
        "detail": "Top-up amount must be between 500 and 100000 cents.",
        "min_cents": 500,
        "max_cents": 100000,
    }
    assert fake_stripe.calls() == []


@pytest.mark.parametrize("amount", [0, -100, "ten", 12.5, None])
def test_top_up_amount_must_be_a_positive_integer(
    fake_stripe: FakeStripe, alice_client: APIClient, amount: Any
) -> None:
    assert _top_up(alice_client, amount).status_code == 400
    assert fake_stripe.calls() == []


def test_top_up_rejects_a_foreign_redirect(fake_stripe: FakeStripe, alice_client: APIClient) -> None:
    response = _top_up(alice_client, success_url="https://evil.example.com/")
    assert response.status_code == 422
    assert response.json() == {"detail": "success_url and cancel_url must match the platform frontend origin"}
    assert fake_stripe.calls() == []
    assert not CheckoutRecord.objects.exists()


def test_top_up_without_a_configured_origin_is_503(
    fake_stripe: FakeStripe, settings: Any, alice_client: APIClient
) -> None:
    settings.FRONTEND_BASE_URL = settings.PLATFORM_BASE_URL = ""
    assert _top_up(alice_client).status_code == 503
    assert fake_stripe.calls() == []


@pytest.mark.parametrize(
    ("setting", "detail"),
    [
        ("ENABLE_CREDIT", "Credits are not enabled on this server."),
        ("ENABLE_PLATFORM_PAYMENT", "Payments are not enabled on this server."),
    ],
)
def test_top_up_when_switched_off_is_503(
    fake_stripe: FakeStripe, settings: Any, alice_client: APIClient, setting: str, detail: str
) -> None:
    setattr(settings, setting, False)
    response = _top_up(alice_client)
    assert response.status_code == 503
    assert response.json() == {"detail": detail}
    assert fake_stripe.calls() == []


def test_top_up_stripe_error_is_502_without_stripe_text(fake_stripe: FakeStripe, alice_client: APIClient) -> None:
    fake_stripe.fail_next("/v1/checkout/sessions", 400, message="Stripe internal: secret detail")
    response = _top_up(alice_client)
    assert response.status_code == 502
    assert response.json() == {"detail": CHECKOUT_FAILED}
    assert CheckoutRecord.objects.get().status == CheckoutRecord.Status.FAILED
