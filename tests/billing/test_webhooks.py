"""``POST /api/billing/stripe/webhook``: verification, replay, ordering and every handler.

Payloads are signed with ``copilot_site.testing.fake_stripe.signing`` (Stripe's
``t=…,v1=…`` HMAC-SHA256 scheme), so the real ``stripe.Webhook.construct_event`` verification runs.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
import stripe
from django.test import Client
from rest_framework.test import APIClient

from billing.models import CheckoutRecord, CreditTransaction, CustomerAccount, StripeEvent, Tier
from billing.selectors import credit_balance
from billing.services import account_tier_set, credits_spend
from billing.stripe_gateway import API_VERSION
from tests.billing.conftest import (
    API_KEY,
    FRONTEND,
    FakeStripe,
    TaskCalls,
    account_of,
    committed,
    post_event,
    subscribe,
)

pytestmark = pytest.mark.django_db

Kind = CreditTransaction.Kind


def make_event(
    event_type: str, obj: Any, *, created: int | None = None, api_version: str = API_VERSION
) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": api_version,
        "created": created if created is not None else int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def _sdk(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": fake.base_url})


def _top_up(fake: FakeStripe, client: APIClient, amount: int = 2500) -> dict[str, Any]:
    """Open a top-up Checkout and pay it at the fake; returns the completed session (events not delivered)."""
    response = client.post(
        "/api/billing/credits/top-up",
        {"amount": amount, "success_url": f"{FRONTEND}/billing", "cancel_url": f"{FRONTEND}/billing"},
        format="json",
    )
    assert response.status_code == 200, response.content
    session_id = response.json()["url"].rsplit("/", 1)[-1]
    completed: dict[str, Any] = fake.control(f"/_fake/checkout/{session_id}/complete")["object"]
    return completed


def _event_of(fake: FakeStripe, event_type: str) -> dict[str, Any]:
    return next(e for e in reversed(fake.events()) if e["type"] == event_type)


# --- verification --------------------------------------------------------------------------------


def test_no_secret_is_503(settings: Any, client: Client) -> None:
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = post_event(client, make_event("invoice.paid", {"id": "in_1"}), secret="whsec_anything")
    assert response.status_code == 503
    assert response.json() == {"detail": "Webhook not configured"}
    assert not StripeEvent.objects.exists()


def test_bad_signature_is_400(fake_stripe: FakeStripe, client: Client) -> None:
    response = post_event(client, make_event("invoice.paid", {"id": "in_1"}), secret="whsec_someone_else")
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid signature"}
    assert not StripeEvent.objects.exists()


def test_missing_signature_is_400(fake_stripe: FakeStripe, client: Client) -> None:
    response = post_event(client, make_event("invoice.paid", {"id": "in_1"}), signature="")
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid signature"}


def test_signed_garbage_is_invalid_payload(fake_stripe: FakeStripe, client: Client) -> None:
    from copilot_site.testing.fake_stripe import sign_payload
    from tests.billing.conftest import WEBHOOK_SECRET

    payload = "{not json"
    response = client.post(
        "/api/billing/stripe/webhook",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(payload, WEBHOOK_SECRET),
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid payload"}


def test_get_is_not_allowed(fake_stripe: FakeStripe, client: Client) -> None:
    assert client.get("/api/billing/stripe/webhook").status_code == 405


def test_another_api_version_is_refused(fake_stripe: FakeStripe, client: Client) -> None:
    response = post_event(client, make_event("invoice.paid", {"id": "in_1"}, api_version="2020-08-27"))
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_unknown_type_is_acknowledged_and_recorded(fake_stripe: FakeStripe, client: Client) -> None:
    event = make_event("customer.tax_id.created", {"id": "txi_1"})
    response = post_event(client, event)
    assert response.status_code == 200
    row = StripeEvent.objects.get()
    assert (row.stripe_event_id, row.type, row.processed_at is not None) == (event["id"], event["type"], True)


@pytest.mark.parametrize("data_object", [None, "sub_123", ["a"]])
def test_an_event_without_a_dict_object_is_ignored(
    fake_stripe: FakeStripe, client: Client, alice: Any, data_object: Any
) -> None:
    account_tier_set(user=alice, tier=Tier.PRO, reason="x")
    response = post_event(client, make_event("customer.subscription.deleted", data_object))
    assert response.status_code == 200
    assert account_of(alice).tier == Tier.PRO
    assert fake_stripe.calls() == []


# --- top-ups: fulfilment, replay, refunds and disputes -----------------------------------------------------


def test_top_up_is_fulfilled_once_from_the_webhook_and_replays_change_nothing(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: paid at Checkout, nothing granted yet
    session = _top_up(fake_stripe, alice_client, 2500)
    assert credit_balance(user=alice) == 0
    event = _event_of(fake_stripe, "checkout.session.completed")
    # when: Stripe delivers the event, then replays it three times
    statuses = [fake_stripe.deliver(event).status_code for _ in range(4)]
    # then
    assert statuses == [200, 200, 200, 200]
    assert credit_balance(user=alice) == 2500
    row = CreditTransaction.objects.get()
    assert (row.kind, row.amount_cents, row.idempotency_key) == (Kind.TOP_UP, 2500, f"topup:{session['id']}")
    assert StripeEvent.objects.filter(stripe_event_id=event["id"]).count() == 1
    record = CheckoutRecord.objects.get()
    assert (record.status, record.amount_paid_cents, record.stripe_payment_intent_id) == (
        CheckoutRecord.Status.FULFILLED,
        2500,
        session["payment_intent"],
    )


def test_a_second_event_for_the_same_checkout_grants_nothing(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: completed and async_payment_succeeded both arrive (different event ids)
    _top_up(fake_stripe, alice_client, 1000)
    completed = _event_of(fake_stripe, "checkout.session.completed")
    fake_stripe.deliver(completed)
    # when
    again = make_event("checkout.session.async_payment_succeeded", completed["data"]["object"])
    assert fake_stripe.deliver(again).status_code == 200
    # then
    assert credit_balance(user=alice) == 1000
    assert CreditTransaction.objects.count() == 1


def test_an_unpaid_completed_checkout_grants_nothing_until_the_payment_succeeds(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: a delayed payment method
    _top_up(fake_stripe, alice_client, 1000)
    session = dict(_event_of(fake_stripe, "checkout.session.completed")["data"]["object"])
    unpaid = {**session, "payment_status": "unpaid"}
    # when
    fake_stripe.deliver(make_event("checkout.session.completed", unpaid))
    # then
    assert credit_balance(user=alice) == 0
    # when: the async payment succeeds
    fake_stripe.deliver(make_event("checkout.session.async_payment_succeeded", session))
    # then
    assert credit_balance(user=alice) == 1000


def test_a_refund_claws_back_the_refunded_credits(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    # given
    session = _top_up(fake_stripe, alice_client, 2000)
    fake_stripe.deliver_new_events()
    # when: 500 refunded from the dashboard
    refund = _sdk(fake_stripe).v1.refunds.create({"payment_intent": session["payment_intent"], "amount": 500})
    results = fake_stripe.deliver_new_events()
    # then
    assert ("refund.created", 200) in results
    assert credit_balance(user=alice) == 1500
    row = CreditTransaction.objects.get(kind=Kind.REFUND)
    assert (row.amount_cents, row.idempotency_key) == (-500, f"refund:{refund.id}")
    assert CheckoutRecord.objects.get().clawed_back_cents == 500


def test_a_refund_after_the_credits_were_spent_stops_at_zero(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    session = _top_up(fake_stripe, alice_client, 2000)
    fake_stripe.deliver_new_events()
    credits_spend(user=alice, amount_cents=1800, idempotency_key="tool:t:c", reason="tool")
    _sdk(fake_stripe).v1.refunds.create({"payment_intent": session["payment_intent"]})
    fake_stripe.deliver_new_events()
    assert credit_balance(user=alice) == 0
    assert CreditTransaction.objects.get(kind=Kind.REFUND).amount_cents == -200


def test_a_refund_of_something_else_is_ignored(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    response = fake_stripe.deliver(
        make_event("refund.created", {"id": "re_x", "amount": 100, "payment_intent": "pi_other"})
    )
    assert response.status_code == 200
    assert not CreditTransaction.objects.exists()


def test_a_dispute_is_noted_then_a_lost_dispute_claws_back(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    session = _top_up(fake_stripe, alice_client, 3000)
    fake_stripe.deliver_new_events()
    charge = _sdk(fake_stripe).v1.payment_intents.retrieve(session["payment_intent"]).latest_charge
    # when: the cardholder disputes
    opened = fake_stripe.control(f"/_fake/charges/{charge}/dispute")["object"]
    fake_stripe.deliver_new_events()
    # then: a note, no deduction yet
    note = CreditTransaction.objects.get(kind=Kind.DISPUTE)
    assert (note.amount_cents, note.idempotency_key) == (0, f"dispute-opened:{opened['id']}")
    assert credit_balance(user=alice) == 3000
    # when: the dispute is lost (the fake has no close endpoint: the event is built here)
    fake_stripe.deliver(make_event("charge.dispute.closed", {**opened, "status": "lost"}))
    # then
    assert credit_balance(user=alice) == 0
    lost = CreditTransaction.objects.get(idempotency_key=f"dispute-lost:{opened['id']}")
    assert (lost.kind, lost.amount_cents) == (Kind.DISPUTE, -3000)


def test_a_checkout_event_without_an_id_is_acknowledged_and_ignored(fake_stripe: FakeStripe, alice: Any) -> None:
    obj = {"mode": "payment", "payment_status": "paid", "amount_total": 500, "metadata": {"user_id": str(alice.pk)}}
    response = fake_stripe.deliver(make_event("checkout.session.completed", obj))
    assert response.status_code == 200
    assert not CreditTransaction.objects.exists()


def test_a_won_dispute_deducts_nothing(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    session = _top_up(fake_stripe, alice_client, 1000)
    fake_stripe.deliver_new_events()
    dispute = {"id": "dp_1", "amount": 1000, "payment_intent": session["payment_intent"], "status": "won"}
    fake_stripe.deliver(make_event("charge.dispute.closed", dispute))
    assert credit_balance(user=alice) == 1000


# --- subscriptions -----------------------------------------------------------------------------------------


def test_updated_before_created_never_moves_back(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    # given: a PRO subscription changed to BUSINESS a second later
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    account_tier_set(user=alice, tier=Tier.FREE, reason="reset for the test")
    CustomerAccount.objects.filter(user=alice).update(subscription_synced_at=None)
    t0 = int(time.time()) + 100
    created = make_event("customer.subscription.created", sub, created=t0)
    item = sub["items"]["data"][0]
    business_item = {**item, "price": {**item["price"], "id": fake_stripe.prices[Tier.BUSINESS]}}
    business = {**sub, "items": {**sub["items"], "data": [business_item]}}
    updated = make_event("customer.subscription.updated", business, created=t0 + 1)
    # when: delivered out of order
    assert fake_stripe.deliver(updated).status_code == 200
    assert fake_stripe.deliver(created).status_code == 200
    # then
    account = account_of(alice)
    assert account.tier == Tier.BUSINESS
    assert int(account.subscription_synced_at.timestamp()) == t0 + 1  # type: ignore[union-attr]


def test_deletion_of_an_old_subscription_after_a_newer_one_leaves_the_tier(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, billing_task_calls: TaskCalls
) -> None:
    # given: PRO, then a newer BUSINESS subscription for the same customer
    old = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    sdk = _sdk(fake_stripe)
    sdk.v1.subscriptions.create({"customer": old["customer"], "items": [{"price": fake_stripe.prices[Tier.BUSINESS]}]})
    fake_stripe.deliver_new_events()
    assert account_of(alice).tier == Tier.BUSINESS
    # the newer subscription asked for the stale one to be cancelled (after commit)
    assert billing_task_calls.cleanup_stale.call_args.args[0] == old["customer"]
    # when: the old one is cancelled and its deletion arrives
    sdk.v1.subscriptions.cancel(old["id"])
    fake_stripe.deliver_new_events()
    # then
    assert account_of(alice).tier == Tier.BUSINESS


def test_deletion_of_the_only_subscription_moves_to_free(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    _sdk(fake_stripe).v1.subscriptions.cancel(sub["id"])
    fake_stripe.deliver_new_events()
    account = account_of(alice)
    assert (account.tier, account.subscription_status) == (Tier.FREE, "canceled")


def test_an_unknown_price_logs_a_warning_and_leaves_the_tier(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    legacy = fake_stripe.server.state.seed_price("legacy_plan", 999)
    item = sub["items"]["data"][0]
    _sdk(fake_stripe).v1.subscriptions.update(sub["id"], {"items": [{"id": item["id"], "price": legacy}]})
    # when
    with caplog.at_level(logging.WARNING, logger="billing"):
        fake_stripe.deliver_new_events()
    # then
    assert account_of(alice).tier == Tier.PRO
    assert f"Unknown Stripe price {legacy} on subscription {sub['id']}; tier unchanged" in caplog.messages


@pytest.mark.parametrize("event_type", ["customer.subscription.updated", "customer.subscription.deleted"])
def test_no_webhook_changes_an_enterprise_user(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient, event_type: str
) -> None:
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    account_tier_set(user=alice, tier=Tier.ENTERPRISE, reason="contract")
    mark = fake_stripe.mark()
    status = "canceled" if event_type.endswith("deleted") else "active"
    response = fake_stripe.deliver(make_event(event_type, {**sub, "status": status}, created=int(time.time()) + 60))
    assert response.status_code == 200
    assert account_of(alice).tier == Tier.ENTERPRISE
    assert fake_stripe.calls_since(mark) == []


def test_schedule_updated_is_ignored_and_released_resyncs(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: BUSINESS with a downgrade scheduled; our mirror says PRO is pending
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    with committed():
        alice_client.post("/api/billing/subscription", {"tier": Tier.PRO}, format="json")
    schedule_id = fake_stripe.subscription(sub["id"])["schedule"]
    fake_stripe.skip_events()
    schedule = fake_stripe.server.state.retrieve("subscription_schedule", schedule_id)
    mark = fake_stripe.mark()
    # when: subscription_schedule.updated arrives
    response = fake_stripe.deliver(make_event("subscription_schedule.updated", schedule))
    # then: nothing read, nothing changed
    assert response.status_code == 200
    assert fake_stripe.calls_since(mark) == []
    assert account_of(alice).pending_tier == Tier.PRO
    # when: the schedule is released in the dashboard and only the schedule event arrives
    _sdk(fake_stripe).v1.subscription_schedules.release(schedule_id)
    released = _event_of(fake_stripe, "subscription_schedule.released")
    mark = fake_stripe.mark()
    fake_stripe.deliver(released)
    # then: re-synced from the customer's current subscription
    assert fake_stripe.calls_since(mark) == ["GET /v1/subscriptions"]
    account = account_of(alice)
    assert (account.tier, account.pending_tier) == (Tier.BUSINESS, None)


def test_schedule_completed_resyncs_the_tier(fake_stripe: FakeStripe, alice: Any, alice_client: APIClient) -> None:
    # given: Stripe moved the subscription to PRO but only the schedule event reaches us
    sub = subscribe(fake_stripe, alice_client, alice, Tier.BUSINESS)
    item = sub["items"]["data"][0]
    _sdk(fake_stripe).v1.subscriptions.update(
        sub["id"], {"items": [{"id": item["id"], "price": fake_stripe.prices[Tier.PRO]}]}
    )
    fake_stripe.skip_events()
    completed = make_event(
        "subscription_schedule.completed",
        {"id": "sub_sched_x", "object": "subscription_schedule", "customer": sub["customer"], "status": "completed"},
    )
    # when
    fake_stripe.deliver(completed)
    # then
    assert account_of(alice).tier == Tier.PRO


def test_payment_failed_marks_past_due_and_paid_clears_it(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given
    sub = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    # when
    failed = fake_stripe.control("/_fake/invoices/fail", {"subscription": sub["id"]})["object"]
    fake_stripe.deliver_new_events()
    # then: past due, tier kept
    account = account_of(alice)
    assert account.payment_failed_at is not None
    assert (account.tier, account.is_past_due) == (Tier.PRO, True)
    # when
    fake_stripe.control(f"/_fake/invoices/{failed['id']}/pay")
    fake_stripe.deliver_new_events()
    # then
    assert account_of(alice).payment_failed_at is None


def test_a_stale_invoice_paid_does_not_clear_a_newer_failure(fake_stripe: FakeStripe, alice: Any) -> None:
    account_tier_set(user=alice, tier=Tier.FREE, reason="x")
    CustomerAccount.objects.filter(user=alice).update(stripe_customer_id="cus_old")
    now = int(time.time())
    fake_stripe.deliver(make_event("invoice.payment_failed", {"id": "in_2", "customer": "cus_old"}, created=now))
    fake_stripe.deliver(make_event("invoice.paid", {"id": "in_1", "customer": "cus_old"}, created=now - 60))
    assert account_of(alice).payment_failed_at is not None


# --- failures roll back and are retried ----------------------------------------------------------------------


def test_a_failing_handler_rolls_back_returns_500_and_the_retry_applies(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    # given: the subscription checkout completed; Stripe is down when we read the subscription
    response = alice_client.post(
        "/api/billing/subscription",
        {"tier": Tier.PRO, "success_url": f"{FRONTEND}/b", "cancel_url": f"{FRONTEND}/b"},
        format="json",
    )
    session_id = response.json()["url"].rsplit("/", 1)[-1]
    fake_stripe.control(f"/_fake/checkout/{session_id}/complete")
    event = _event_of(fake_stripe, "checkout.session.completed")
    fake_stripe.fail_next("/v1/subscriptions/", 500, method="GET")
    # when
    failed = fake_stripe.deliver(event)
    # then: 500, nothing applied, the failure kept for the retry
    assert failed.status_code == 500
    assert account_of(alice).tier == Tier.FREE
    assert CheckoutRecord.objects.get().status == CheckoutRecord.Status.OPEN
    row = StripeEvent.objects.get(stripe_event_id=event["id"])
    assert row.processed_at is None
    assert row.error.startswith("PaymentProviderError")
    # when: Stripe retries
    retried = fake_stripe.deliver(event)
    # then
    assert retried.status_code == 200
    assert account_of(alice).tier == Tier.PRO
    row.refresh_from_db()
    assert (row.processed_at is not None, row.error) == (True, "")
    # and a further replay is a no-op
    assert fake_stripe.deliver(event).json()["outcome"] == "duplicate"


def test_stale_subscription_cleanup_cancels_the_others_best_effort(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    from billing import tasks

    # given: two active subscriptions for one customer
    old = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    new = _sdk(fake_stripe).v1.subscriptions.create(
        {"customer": old["customer"], "items": [{"price": fake_stripe.prices[Tier.BUSINESS]}]}
    )
    mark = fake_stripe.mark()
    # when: the task the newer subscription's sync enqueued runs
    tasks.subscription_cleanup_stale(old["customer"], new.id)
    # then
    assert fake_stripe.calls_since(mark) == [
        "GET /v1/subscriptions",
        "GET /v1/subscriptions",
        f"DELETE /v1/subscriptions/{old['id']}",
    ]
    assert fake_stripe.subscription(old["id"])["status"] == "canceled"
    assert fake_stripe.subscription(new.id)["status"] == "active"


def test_stale_subscription_cleanup_survives_stripe_errors(
    fake_stripe: FakeStripe, alice: Any, alice_client: APIClient
) -> None:
    from billing.services import subscriptions_cleanup_stale

    old = subscribe(fake_stripe, alice_client, alice, Tier.PRO)
    fake_stripe.fail_next("/v1/subscriptions", 500)
    assert subscriptions_cleanup_stale(customer_id=old["customer"], keep_subscription_id="sub_new") == []
    assert fake_stripe.subscription(old["id"])["status"] == "active"
