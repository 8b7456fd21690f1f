"""``POST /api/billing/subscription``: every branch of a tier change (same tier undoes a pending change, free
cancels at period end, an upgrade applies now, a downgrade waits for the period end on a schedule, free to paid
opens Checkout), with the exact Stripe calls.

Each test drives the real fake Stripe server over HTTP through the real SDK and
reads ``/_fake/requests`` to assert which calls were made and which were not.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import stripe
from django.db import connection
from rest_framework.test import APIClient

from billing.models import CheckoutRecord, CustomerAccount, Tier, TierChange
from billing.services import account_tier_set
from billing.stripe_gateway import API_VERSION
from tests.billing.conftest import (
    API_KEY,
    BUSINESS_CENTS,
    FRONTEND,
    PRO_CENTS,
    FakeStripe,
    account_of,
    committed,
    subscribe,
)

pytestmark = pytest.mark.django_db

URLS = {"success_url": f"{FRONTEND}/billing?subscription=success", "cancel_url": f"{FRONTEND}/billing"}
UPDATE_FAILED = "Unable to update your subscription right now. Please try again or contact support."
CANCEL_FAILED = "Unable to cancel your subscription right now. Please try again or contact support."
CANCEL_PENDING_FAILED = (
    "Unable to cancel the pending subscription change right now. Please try again or contact support."
)
CHECKOUT_FAILED = "Unable to start checkout right now. Please try again or contact support."


def _post(client: APIClient, tier: str, **extra: str) -> Any:
    with committed():
        return client.post("/api/billing/subscription", {"tier": tier, **extra}, format="json")


def _sdk(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": fake.base_url})


def _customer(user: Any) -> str:
    customer = account_of(user).stripe_customer_id
    assert customer is not None
    return customer


# --- ENTERPRISE and validation -------------------------------------------------------------------


@pytest.mark.parametrize("tier", [Tier.FREE, Tier.PRO, Tier.BUSINESS])
def test_enterprise_users_get_403_and_stripe_is_not_called(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, tier: str
) -> None:
    # given
    account_tier_set(user=alice, tier=Tier.ENTERPRISE, reason="contract")
    # when
    response = _post(alice_client, tier, **URLS)
    # then
    assert response.status_code == 403
    assert response.json() == {"detail": "ENTERPRISE subscription changes must be managed by an administrator"}
    assert fake_stripe.calls_since(0) == []
    assert account_of(alice).tier == Tier.ENTERPRISE


def test_enterprise_is_not_a_tier_users_can_ask_for(fake_stripe: FakeStripe, alice_client: APIClient) -> None:
    response = _post(alice_client, Tier.ENTERPRISE)
    assert response.status_code == 400
    assert fake_stripe.calls_since(0) == []


def test_anonymous_requests_are_refused(api_client: APIClient) -> None:
    assert api_client.get("/api/billing/subscription").status_code in (401, 403)
    assert _post(api_client, Tier.PRO, **URLS).status_code in (401, 403)


# --- same tier: cancel the pending change -------------------------------------------------------------


def test_same_tier_without_stripe_customer_changes_nothing(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    response = _post(alice_client, Tier.FREE)
    assert response.status_code == 200
    assert response.json()["tier"] == Tier.FREE
    assert response.json()["pending_tier"] is None
    assert fake_stripe.calls_since(0) == []


def test_same_tier_releases_a_scheduled_downgrade(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    # given: BUSINESS with a downgrade to PRO scheduled
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    assert _post(alice_client, Tier.PRO).json()["pending_tier"] == Tier.PRO
    schedule_id = fake_stripe.subscription(sub["id"])["schedule"]
    mark = fake_stripe.mark()
    # when: "Keep Business"
    response = _post(alice_client, Tier.BUSINESS)
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["tier"], body["pending_tier"], body["pending_tier_effective_at"]) == (Tier.BUSINESS, None, None)
    assert fake_stripe.calls_since(mark) == [
        "GET /v1/subscriptions",
        f"POST /v1/subscription_schedules/{schedule_id}/release",
        "GET /v1/subscriptions",  # the status read after the POST (the pending cache was invalidated)
    ]
    assert fake_stripe.server.state.retrieve("subscription_schedule", schedule_id)["status"] == "released"
    assert account_of(alice).pending_tier is None


def test_same_tier_clears_cancel_at_period_end(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    # given: PRO, cancelling at period end
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    assert _post(alice_client, Tier.FREE).json()["pending_tier"] == Tier.FREE
    mark = fake_stripe.mark()
    # when
    response = _post(alice_client, Tier.PRO)
    # then
    assert response.json()["pending_tier"] is None
    requests = fake_stripe.requests()[mark:]
    assert [f"{r['method']} {r['path']}" for r in requests] == [
        "GET /v1/subscriptions",
        f"POST /v1/subscriptions/{sub['id']}",
        "GET /v1/subscriptions",
    ]
    assert requests[1]["params"] == {"cancel_at_period_end": "false"}
    assert fake_stripe.subscription(sub["id"])["cancel_at_period_end"] is False


def test_same_tier_stripe_error_is_502_with_the_generic_text(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    _post(alice_client, Tier.PRO)
    fake_stripe.fail_next("/v1/subscription_schedules/", 500, message="internal detail nobody should see")
    # when
    response = _post(alice_client, Tier.BUSINESS)
    # then
    assert response.status_code == 502
    assert response.json() == {"detail": CANCEL_PENDING_FAILED}
    assert account_of(alice).tier == Tier.BUSINESS


# --- paid → FREE -----------------------------------------------------------------------------------------


def test_free_with_payments_off_is_set_directly(
    fake_stripe: FakeStripe, settings: Any, alice: Any, alice_client: APIClient
) -> None:
    # given
    settings.ENABLE_PLATFORM_PAYMENT = False
    account_tier_set(user=alice, tier=Tier.PRO, reason="beta")
    # when
    response = _post(alice_client, Tier.FREE)
    # then
    assert response.status_code == 200
    assert response.json()["tier"] == Tier.FREE
    assert account_of(alice).tier == Tier.FREE
    assert fake_stripe.calls_since(0) == []
    assert TierChange.objects.filter(user=alice).latest("pk").tier == Tier.FREE


def test_free_cancels_at_period_end_and_keeps_the_tier_until_stripe_deletes(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    mark = fake_stripe.mark()
    # when
    response = _post(alice_client, Tier.FREE)
    # then: Stripe cancels at period end, the DB tier waits for the webhook
    assert response.status_code == 200
    body = response.json()
    assert (body["tier"], body["pending_tier"]) == (Tier.PRO, Tier.FREE)
    requests = fake_stripe.requests()[mark:]
    assert [f"{r['method']} {r['path']}" for r in requests][:2] == [
        "GET /v1/subscriptions",
        f"POST /v1/subscriptions/{sub['id']}",
    ]
    assert requests[1]["params"] == {"cancel_at_period_end": "true"}
    assert account_of(alice).tier == Tier.PRO
    # when: the period ends and Stripe's events arrive
    fake_stripe.deliver_new_events()
    fake_stripe.control(f"/_fake/subscriptions/{sub['id']}/advance")
    fake_stripe.deliver_new_events()
    # then
    account = account_of(alice)
    assert (account.tier, account.pending_tier, account.subscription_status) == (Tier.FREE, None, "canceled")


def test_free_after_a_scheduled_downgrade_releases_the_schedule_then_cancels(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: BUSINESS → PRO scheduled
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    _post(alice_client, Tier.PRO)
    schedule_id = fake_stripe.subscription(sub["id"])["schedule"]
    mark = fake_stripe.mark()
    # when
    response = _post(alice_client, Tier.FREE)
    # then
    assert response.json()["pending_tier"] == Tier.FREE
    assert fake_stripe.calls_since(mark)[:3] == [
        "GET /v1/subscriptions",
        f"POST /v1/subscription_schedules/{schedule_id}/release",
        f"POST /v1/subscriptions/{sub['id']}",
    ]
    stripe_sub = fake_stripe.subscription(sub["id"])
    assert (stripe_sub["schedule"], stripe_sub["cancel_at_period_end"]) == (None, True)


def test_free_for_a_staff_granted_tier_is_immediate(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: PRO granted by staff, no Stripe customer or subscription
    account_tier_set(user=alice, tier=Tier.PRO, reason="partner")
    # when
    response = _post(alice_client, Tier.FREE)
    # then
    assert response.json()["tier"] == Tier.FREE
    assert account_of(alice).tier == Tier.FREE
    assert fake_stripe.calls_since(0) == []


def test_free_for_a_customer_without_a_subscription_is_immediate(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: a Stripe customer (from an abandoned checkout) and a staff-granted PRO
    _post(alice_client, Tier.PRO, **URLS)
    account_tier_set(user=alice, tier=Tier.PRO, reason="partner")
    mark = fake_stripe.mark()
    # when
    response = _post(alice_client, Tier.FREE)
    # then
    assert response.json()["tier"] == Tier.FREE
    # active then trialing: none, so FREE at once; then the same two for the status reply
    assert fake_stripe.calls_since(mark) == ["GET /v1/subscriptions"] * 4


def test_free_stripe_error_is_502_and_the_tier_is_untouched(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    fake_stripe.fail_next(f"/v1/subscriptions/{sub['id']}", 500, method="POST")
    # when
    response = _post(alice_client, Tier.FREE)
    # then
    assert response.status_code == 502
    assert response.json() == {"detail": CANCEL_FAILED}
    assert account_of(alice).tier == Tier.PRO
    assert fake_stripe.subscription(sub["id"])["cancel_at_period_end"] is False


# --- paid targets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", [Tier.PRO, Tier.BUSINESS])
def test_paid_tier_with_payments_off_is_422(
    fake_stripe: FakeStripe, settings: Any, alice_client: APIClient, tier: str
) -> None:
    settings.ENABLE_PLATFORM_PAYMENT = False
    response = _post(alice_client, tier, **URLS)
    assert response.status_code == 422
    assert response.json() == {"detail": f"Subscription not available for tier {tier}"}
    assert fake_stripe.calls_since(0) == []
    assert not CheckoutRecord.objects.exists()


def test_upgrade_modifies_the_subscription_now_with_always_invoice(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    item_id = sub["items"]["data"][0]["id"]
    mark = fake_stripe.mark()
    # when
    response = _post(alice_client, Tier.BUSINESS)
    # then: Stripe switched, the DB follows the webhook
    assert response.status_code == 200
    requests = fake_stripe.requests()[mark:]
    assert [f"{r['method']} {r['path']}" for r in requests][:2] == [
        "GET /v1/subscriptions",
        f"POST /v1/subscriptions/{sub['id']}",
    ]
    assert requests[1]["params"] == {
        "items": [{"id": item_id, "price": fake_stripe.prices[Tier.BUSINESS]}],
        "proration_behavior": "always_invoice",
    }
    assert account_of(alice).tier == Tier.PRO
    fake_stripe.deliver_new_events()
    assert account_of(alice).tier == Tier.BUSINESS


def test_upgrade_releases_a_pending_schedule_first(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: PRO with a schedule made in the Stripe dashboard (renew on BUSINESS)
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    sdk = _sdk(fake_stripe)
    schedule = sdk.v1.subscription_schedules.create({"from_subscription": sub["id"]})
    sdk.v1.subscription_schedules.update(
        schedule.id,
        {
            "phases": [
                {"items": [{"price": fake_stripe.prices[Tier.PRO]}], "start_date": sub["current_period_start"],
                 "end_date": sub["current_period_end"]},
                {"items": [{"price": fake_stripe.prices[Tier.BUSINESS]}]},
            ]
        },
    )  # fmt: skip
    fake_stripe.deliver_new_events()  # customer.subscription.updated invalidates the pending cache
    assert alice_client.get("/api/billing/subscription").json()["pending_tier"] == Tier.BUSINESS
    mark = fake_stripe.mark()
    # when
    _post(alice_client, Tier.BUSINESS)
    # then: released before the price change
    assert fake_stripe.calls_since(mark)[:3] == [
        "GET /v1/subscriptions",
        f"POST /v1/subscription_schedules/{schedule.id}/release",
        f"POST /v1/subscriptions/{sub['id']}",
    ]
    assert fake_stripe.subscription(sub["id"])["items"]["data"][0]["price"]["id"] == fake_stripe.prices[Tier.BUSINESS]


def test_upgrade_clears_a_scheduled_cancellation(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    _post(alice_client, Tier.FREE)
    mark = fake_stripe.mark()
    # when
    _post(alice_client, Tier.BUSINESS)
    # then
    requests = fake_stripe.requests()[mark:]
    assert [f"{r['method']} {r['path']}" for r in requests][:3] == [
        "GET /v1/subscriptions",
        f"POST /v1/subscriptions/{sub['id']}",
        f"POST /v1/subscriptions/{sub['id']}",
    ]
    assert requests[1]["params"] == {"cancel_at_period_end": "false"}
    assert requests[2]["params"]["proration_behavior"] == "always_invoice"
    assert fake_stripe.subscription(sub["id"])["cancel_at_period_end"] is False


def test_downgrade_creates_a_two_phase_schedule_and_switches_at_period_end(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    mark = fake_stripe.mark()
    # when
    response = _post(alice_client, Tier.PRO)
    # then
    body = response.json()
    assert (body["tier"], body["pending_tier"]) == (Tier.BUSINESS, Tier.PRO)
    assert body["pending_tier_effective_at"] is not None
    requests = fake_stripe.requests()[mark:]
    schedule_id = fake_stripe.subscription(sub["id"])["schedule"]
    assert [f"{r['method']} {r['path']}" for r in requests][:3] == [
        "GET /v1/subscriptions",
        "POST /v1/subscription_schedules",
        f"POST /v1/subscription_schedules/{schedule_id}",
    ]
    create, update = requests[1], requests[2]
    assert create["params"] == {"from_subscription": sub["id"]}
    assert create["idempotency_key"].startswith(f"schedule-create-{account_of(alice).pk}-{sub['id']}-")
    phases = update["params"]["phases"]
    assert phases[0]["items"] == [{"price": fake_stripe.prices[Tier.BUSINESS], "quantity": "1"}]
    assert phases[0]["end_date"] == str(sub["current_period_end"])
    assert phases[1]["items"] == [{"price": fake_stripe.prices[Tier.PRO], "quantity": "1"}]
    assert update["params"]["end_behavior"] == "release"
    # no mid-cycle demotion
    assert fake_stripe.subscription(sub["id"])["items"]["data"][0]["price"]["id"] == fake_stripe.prices[Tier.BUSINESS]
    fake_stripe.deliver_new_events()
    assert account_of(alice).tier == Tier.BUSINESS
    # when: the period ends
    fake_stripe.control(f"/_fake/subscriptions/{sub['id']}/advance")
    fake_stripe.deliver_new_events()
    # then
    assert account_of(alice).tier == Tier.PRO


def test_downgrade_with_cancel_at_period_end_set_clears_it_first(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    _post(alice_client, Tier.FREE)
    mark = fake_stripe.mark()
    # when
    _post(alice_client, Tier.PRO)
    # then
    requests = fake_stripe.requests()[mark:]
    assert [f"{r['method']} {r['path']}" for r in requests][:3] == [
        "GET /v1/subscriptions",
        f"POST /v1/subscriptions/{sub['id']}",
        "POST /v1/subscription_schedules",
    ]
    assert requests[1]["params"] == {"cancel_at_period_end": "false"}


def test_downgrade_with_an_existing_schedule_releases_it_first(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    _post(alice_client, Tier.PRO)
    first_schedule = fake_stripe.subscription(sub["id"])["schedule"]
    mark = fake_stripe.mark()
    # when: the same downgrade again
    _post(alice_client, Tier.PRO)
    # then: a new schedule, the old one released (two different idempotency keys)
    assert fake_stripe.calls_since(mark)[:3] == [
        "GET /v1/subscriptions",
        f"POST /v1/subscription_schedules/{first_schedule}/release",
        "POST /v1/subscription_schedules",
    ]
    second_schedule = fake_stripe.subscription(sub["id"])["schedule"]
    assert second_schedule not in (None, first_schedule)


def test_releasing_a_schedule_already_in_a_terminal_state_succeeds(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: a schedule released elsewhere between our read and our release
    from billing.services.subscriptions import _schedule_release

    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    _post(alice_client, Tier.PRO)
    schedule_id = fake_stripe.subscription(sub["id"])["schedule"]
    _sdk(fake_stripe).v1.subscription_schedules.release(schedule_id)
    mark = fake_stripe.mark()
    # when
    _schedule_release(schedule_id)
    # then: the 400 is resolved by reading the schedule
    assert fake_stripe.calls_since(mark) == [
        f"POST /v1/subscription_schedules/{schedule_id}/release",
        f"GET /v1/subscription_schedules/{schedule_id}",
    ]


@pytest.mark.parametrize(("current", "target"), [(Tier.PRO, Tier.BUSINESS), (Tier.BUSINESS, Tier.PRO)])
def test_paid_to_paid_without_a_stripe_subscription_is_immediate(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, current: str, target: str
) -> None:
    account_tier_set(user=alice, tier=current, reason="partner")
    response = _post(alice_client, target)
    assert response.json()["tier"] == target
    assert account_of(alice).tier == target
    assert fake_stripe.calls_since(0) == []


@pytest.mark.parametrize("target", [Tier.BUSINESS, Tier.FREE])
def test_paid_stripe_errors_leave_the_tier_untouched(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, target: str
) -> None:
    # given
    subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    fake_stripe.fail_next("/v1/subscriptions", 503, method="GET")
    # when
    response = _post(alice_client, target)
    # then
    assert response.status_code == 502
    assert response.json() == {"detail": UPDATE_FAILED if target == Tier.BUSINESS else CANCEL_FAILED}
    assert account_of(alice).tier == Tier.PRO


def test_unconfigured_target_price_is_422(
    fake_stripe: FakeStripe, settings: Any, alice: Any, alice_client: APIClient
) -> None:
    subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    settings.STRIPE_PRICE_BUSINESS = ""
    mark = fake_stripe.mark()
    response = _post(alice_client, Tier.BUSINESS)
    assert response.status_code == 422
    assert response.json() == {"detail": "No Stripe price configured for tier BUSINESS"}
    assert fake_stripe.calls_since(mark) == ["GET /v1/subscriptions"]


# --- FREE → paid: Checkout ---------------------------------------------------------------------------------


def test_free_to_paid_opens_checkout(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    # when
    response = _post(alice_client, Tier.PRO, **URLS)
    # then
    assert response.status_code == 200
    body = response.json()
    record = CheckoutRecord.objects.get()
    assert body["url"] == f"{fake_stripe.base_url}/checkout/{record.stripe_checkout_session_id}"
    assert (body["tier"], body["monthly_cost"]) == (Tier.FREE, 0)
    assert body["tier_costs"] == {"FREE": 0, "PRO": PRO_CENTS, "BUSINESS": BUSINESS_CENTS, "ENTERPRISE": 0}
    requests = fake_stripe.requests()
    creates = [r for r in requests if r["method"] == "POST"]
    assert [(r["path"], r["idempotency_key"]) for r in creates] == [
        ("/v1/customers", f"customer-create-{alice.pk}"),
        ("/v1/checkout/sessions", f"checkout-create-{record.pk}"),
    ]
    params = creates[1]["params"]
    assert params["mode"] == "subscription"
    assert params["line_items"] == [{"price": fake_stripe.prices[Tier.PRO], "quantity": "1"}]
    assert params["metadata"] == {"user_id": str(alice.pk), "tier": "PRO", "checkout_record_id": str(record.pk)}
    assert (params["success_url"], params["cancel_url"]) == (URLS["success_url"], URLS["cancel_url"])
    assert all(r["stripe_version"] == API_VERSION for r in requests)
    assert account_of(alice).tier == Tier.FREE  # only the webhook upgrades


def test_checkout_completion_upgrades_through_the_webhook(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    account = account_of(alice)
    assert (account.stripe_subscription_id, account.subscription_status) == (sub["id"], "active")
    assert CheckoutRecord.objects.get().status == CheckoutRecord.Status.FULFILLED


@pytest.mark.parametrize(
    ("_case", "extra"),
    [
        ("none", {}),
        ("no cancel", {"success_url": URLS["success_url"]}),
        ("blank", {"success_url": "", "cancel_url": ""}),
    ],
)
def test_free_to_paid_requires_both_urls(
    fake_stripe: FakeStripe, alice_client: APIClient, _case: str, extra: dict[str, str]
) -> None:
    response = _post(alice_client, Tier.PRO, **extra)
    assert response.status_code == 422
    assert response.json() == {"detail": "success_url and cancel_url are required for paid tier upgrades"}
    assert fake_stripe.calls_since(0) == []


@pytest.mark.parametrize(
    "bad_url",
    [
        "https://evil.example.com/x",
        "https://app.example.com@evil.example.com/",
        "https://app.example.com/\x07",
        "http://app.example.com/",
    ],
)
def test_free_to_paid_rejects_foreign_redirects(fake_stripe: FakeStripe, alice_client: APIClient, bad_url: str) -> None:
    response = _post(alice_client, Tier.PRO, success_url=bad_url, cancel_url=URLS["cancel_url"])
    assert response.status_code == 422
    assert response.json() == {"detail": "success_url and cancel_url must match the platform frontend origin"}
    assert fake_stripe.calls_since(0) == []


def test_free_to_paid_without_a_configured_origin_is_503(
    fake_stripe: FakeStripe, settings: Any, alice_client: APIClient
) -> None:
    settings.FRONTEND_BASE_URL = settings.PLATFORM_BASE_URL = ""
    response = _post(alice_client, Tier.PRO, **URLS)
    assert response.status_code == 503
    assert "FRONTEND_BASE_URL or PLATFORM_BASE_URL" in response.json()["detail"]
    assert fake_stripe.calls_since(0) == []


def test_free_to_paid_without_a_price_is_422(fake_stripe: FakeStripe, settings: Any, alice_client: APIClient) -> None:
    settings.STRIPE_PRICE_PRO = ""
    response = _post(alice_client, Tier.PRO, **URLS)
    assert response.status_code == 422
    assert response.json() == {"detail": "No Stripe price configured for tier PRO"}
    assert fake_stripe.calls_since(0) == []


@pytest.mark.parametrize("failing", ["/v1/customers", "/v1/checkout/sessions"])
def test_checkout_stripe_error_is_502_with_the_generic_text(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, failing: str
) -> None:
    fake_stripe.fail_next(failing, 402, message="Stripe's own words")
    response = _post(alice_client, Tier.PRO, **URLS)
    assert response.status_code == 502
    assert response.json() == {"detail": CHECKOUT_FAILED}
    assert account_of(alice).tier == Tier.FREE


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_checkouts_create_one_stripe_customer(fake_stripe: FakeStripe, alice: Any) -> None:
    # given
    barrier = threading.Barrier(5)
    statuses: list[int] = []

    def checkout() -> None:
        client = APIClient()
        client.force_authenticate(alice)
        try:
            barrier.wait(timeout=30)
            statuses.append(_post(client, Tier.PRO, **URLS).status_code)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=checkout) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then
    assert statuses == [200] * 5
    customers = [o for o in fake_stripe.server.state.objects.values() if o.get("object") == "customer"]
    assert len(customers) == 1
    assert CustomerAccount.objects.get(user=alice).stripe_customer_id == customers[0]["id"]
    keys = {r["idempotency_key"] for r in fake_stripe.requests() if r["path"] == "/v1/customers"}
    assert keys == {f"customer-create-{alice.pk}"}
