"""The fake Stripe catalogue and Checkout: seeded prices, sessions, their pages, payment mode and refunds."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest
import stripe

from copilot_site.testing.fake_stripe import FakeStripeServer
from copilot_site.testing.fake_stripe.store import DAY
from tests.billing.fake_stripe.conftest import (
    control,
    raw_request,
    types_of,
)


def test_seeded_price_retrieve_and_lookup_key_list(client: stripe.StripeClient, prices: dict[str, str]) -> None:
    pro = client.v1.prices.retrieve(prices["pro"], params={"expand": ["product"]})
    assert pro.unit_amount == 2000
    assert pro.currency == "usd"
    assert pro.active is True
    assert pro.recurring is not None
    assert pro.recurring.interval == "month"
    assert pro.lookup_key == "pro"
    assert pro["product"]["object"] == "product"
    assert pro["product"]["id"].startswith("prod_")

    listed = client.v1.prices.list(params={"lookup_keys": ["business"]})
    assert [p.id for p in listed.data] == [prices["business"]]
    assert listed.data[0].unit_amount == 10000


def test_checkout_subscription_completion_creates_active_subscription(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    customer = client.v1.customers.create(params={"email": "alice@example.com", "metadata": {"user_id": "7"}})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "client_reference_id": "7",
            "line_items": [{"price": prices["pro"], "quantity": 1}],
            "metadata": {"user_id": "7", "tier": "pro"},
            "success_url": "https://app.test/ok?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app.test/cancel",
        }
    )
    assert session.id.startswith("cs_test_")
    assert session.status == "open"
    assert session.url == f"{server.base_url}/checkout/{session.id}"

    completion = control(server, f"/_fake/checkout/{session.id}/complete")
    order = completion["event_types"]
    assert order.index("customer.subscription.created") < order.index("invoice.paid")
    assert order.index("invoice.paid") < order.index("checkout.session.completed")
    assert order[-1] == "checkout.session.completed"

    active = client.v1.subscriptions.list(params={"customer": customer.id, "status": "active"})
    assert len(active.data) == 1
    subscription = active.data[0]
    item = subscription["items"].data[0]
    assert subscription.status == "active"
    assert subscription.customer == customer.id
    assert item.id.startswith("si_")
    assert item.price.id == prices["pro"]
    assert item.quantity == 1
    assert item.current_period_end - item.current_period_start == 30 * DAY
    assert subscription["current_period_end"] == item.current_period_end
    assert subscription.cancel_at_period_end is False
    assert subscription.schedule is None

    completed = completion["events"][-1]["data"]["object"]
    assert completed["subscription"] == subscription.id
    assert completed["customer"] == customer.id
    assert completed["amount_total"] == 2000
    assert completed["metadata"] == {"user_id": "7", "tier": "pro"}
    assert completed["client_reference_id"] == "7"
    assert completed["status"] == "complete"
    assert completed["payment_status"] == "paid"

    invoice = client.v1.invoices.retrieve(str(subscription.latest_invoice))
    assert invoice.status == "paid"
    assert invoice.amount_paid == 2000
    assert invoice.billing_reason == "subscription_create"
    assert invoice.parent is not None
    assert invoice.parent.subscription_details is not None
    assert invoice.parent.subscription_details.subscription == subscription.id

    with pytest.raises(stripe.InvalidRequestError, match="can be expired"):
        client.v1.checkout.sessions.expire(session.id)


def test_checkout_subscription_creates_missing_customer(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer_email": "new@example.com",
            "line_items": [{"price": prices["business"], "quantity": 1}],
        }
    )
    completion = control(server, f"/_fake/checkout/{session.id}/complete")
    assert completion["event_types"][0] == "customer.created"
    customer_id = completion["object"]["customer"]
    assert client.v1.customers.retrieve(customer_id).email == "new@example.com"
    subscription = client.v1.subscriptions.retrieve(completion["object"]["subscription"])
    assert subscription["items"].data[0].price.unit_amount == 10000


def test_checkout_pages_for_browsers(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "line_items": [{"price": prices["pro"], "quantity": 1}],
            "success_url": "https://app.test/ok?session_id={CHECKOUT_SESSION_ID}",
        }
    )
    path = urllib.parse.urlsplit(str(session.url)).path
    status, headers, body = raw_request(server, "GET", path)
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert session.id in body.decode()

    status, headers, _ = raw_request(
        server, "POST", f"{path}/pay", {"Content-Type": "application/x-www-form-urlencoded"}, "email=b%40example.com"
    )
    assert status == 303
    assert headers["location"] == f"https://app.test/ok?session_id={session.id}"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"


def test_checkout_payment_mode_then_refunds(client: stripe.StripeClient, server: FakeStripeServer) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "Credits"}},
                    "quantity": 2,
                }
            ],
            "payment_intent_data": {"metadata": {"credits": "1000"}},
            "metadata": {"kind": "credits"},
        }
    )
    assert session.amount_total == 1000
    completion = control(server, f"/_fake/checkout/{session.id}/complete")
    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert paid.payment_status == "paid"
    assert paid.amount_total == 1000
    assert completion["event_types"][-1] == "checkout.session.completed"

    intent = client.v1.payment_intents.retrieve(str(paid.payment_intent))
    assert intent.status == "succeeded"
    assert intent.amount_received == 1000
    assert intent.metadata == {"credits": "1000"}
    charge_id = str(intent.latest_charge)
    assert charge_id.startswith("ch_")

    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 300})
    assert refund.id.startswith("re_")
    assert refund.amount == 300
    assert refund.charge == charge_id
    assert client.v1.refunds.retrieve(refund.id).status == "succeeded"
    charge = client.v1.charges.retrieve(charge_id)
    assert charge.amount_refunded == 300
    assert charge.refunded is False
    assert "refund.created" in types_of(server.state.all_events())

    with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded amount"):
        client.v1.refunds.create(params={"charge": charge_id, "amount": 800})
    client.v1.refunds.create(params={"charge": charge_id})
    assert client.v1.charges.retrieve(charge_id).refunded is True
