"""The fake Stripe server, driven by the real ``stripe`` SDK over HTTP.

No Django and no database: every test starts its own server on a free loopback
port and talks to it through ``stripe.StripeClient`` (or the SDK's global API).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe
from stripe.params import CustomerCreateParams

from copilot_site.testing.fake_stripe import FakeStripeServer, FakeStripeState, event_payload, parse_form, sign_payload
from copilot_site.testing.fake_stripe.store import DAY

API_KEY = "sk_test_fake_suite"
WEBHOOK_SECRET = "whsec_test_secret"

# The SDK's verifier is untyped; pin the signature the tests rely on.
construct_event: Callable[[str, str, str], stripe.Event] = stripe.Webhook.construct_event


@pytest.fixture(autouse=True)
def _flush_app_redis() -> None:
    """Overrides the suite-wide Redis flush: these tests need neither Redis nor Django."""


@pytest.fixture
def server() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeStripeServer) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": server.base_url})


@pytest.fixture
def prices(server: FakeStripeServer) -> dict[str, str]:
    return {
        "pro": server.state.seed_price("pro", 2000),
        "business": server.state.seed_price("business", 10000),
    }


def control(server: FakeStripeServer, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    """POST a form to a /_fake/ control endpoint (GET when ``path`` starts with 'GET ')."""
    method = "POST"
    if path.startswith("GET "):
        method, path = "GET", path[4:]
    data = urllib.parse.urlencode(params or {}).encode() if method == "POST" else None
    request = urllib.request.Request(server.base_url + path, data=data, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback test server
        payload: dict[str, Any] = json.load(response)
    return payload


def raw_request(
    server: FakeStripeServer, method: str, path: str, headers: dict[str, str] | None = None, body: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange without following redirects."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request(method, path, body=body.encode() or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def subscribe(
    client: stripe.StripeClient, server: FakeStripeServer, price: str, *, email: str = "alice@example.com"
) -> tuple[str, stripe.Subscription, dict[str, Any]]:
    """Customer → subscription Checkout Session → completed; returns (customer id, subscription, completion)."""
    customer = client.v1.customers.create(params={"email": email})
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price, "quantity": 1}],
            "success_url": "https://app.test/billing/success?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://app.test/billing/cancel",
        }
    )
    completion = control(server, f"/_fake/checkout/{session.id}/complete")
    subscription = client.v1.subscriptions.retrieve(completion["object"]["subscription"])
    return customer.id, subscription, completion


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


# ---------------------------------------------------------------------------
# request plumbing: auth, idempotency, errors, request log
# ---------------------------------------------------------------------------


def test_idempotency_key_replays_first_response_and_creates_nothing(
    client: stripe.StripeClient, server: FakeStripeServer
) -> None:
    params: CustomerCreateParams = {"email": "alice@example.com", "metadata": {"user_id": "7"}}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "signup-7"})
    second = client.v1.customers.create(params=params, options={"idempotency_key": "signup-7"})

    assert first.id.startswith("cus_")
    assert second.id == first.id
    assert dict(second) == dict(first)
    listed = client.v1.customers.list(params={"email": "alice@example.com"})
    assert [c.id for c in listed.data] == [first.id]
    created_events = [e for e in server.state.all_events() if e["type"] == "customer.created"]
    assert len(created_events) == 1
    assert created_events[0]["request"]["idempotency_key"] == "signup-7"
    assert created_events[0]["data"]["object"]["metadata"] == {"user_id": "7"}

    status, headers, _ = raw_request(
        server,
        "POST",
        "/v1/customers",
        {
            "Authorization": f"Bearer {API_KEY}",
            "Idempotency-Key": "signup-7",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        "email=alice%40example.com&metadata[user_id]=7",
    )
    assert status == 200
    assert headers["idempotent-replayed"] == "true"


def test_concurrent_requests_sharing_an_idempotency_key_create_one_customer(server: FakeStripeServer) -> None:
    ids: list[str] = []

    def create() -> None:
        sdk = stripe.StripeClient(API_KEY, base_addresses={"api": server.base_url})
        customer = sdk.v1.customers.create(params={"email": "race@example.com"}, options={"idempotency_key": "race"})
        ids.append(customer.id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert [e["type"] for e in server.state.all_events()] == ["customer.created"]


def test_idempotency_key_reused_with_other_params_is_rejected(client: stripe.StripeClient) -> None:
    client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "same"})
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "same"})
    assert len(client.v1.customers.list().data) == 1


def test_missing_api_key_is_a_stripe_shaped_401(server: FakeStripeServer) -> None:
    status, _, body = raw_request(server, "GET", "/v1/customers")
    assert status == 401
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    assert "did not provide an API key" in error["message"]

    live_client = stripe.StripeClient("sk_live_not_here", base_addresses={"api": server.base_url})
    with pytest.raises(stripe.AuthenticationError):
        live_client.v1.customers.list()
    assert server.state.all_events() == []


def test_unknown_object_raises_invalid_request_error_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert excinfo.value.http_status == 404
    assert excinfo.value.code == "resource_missing"
    assert excinfo.value.param == "id"
    assert "cus_doesnotexist" in str(excinfo.value.user_message)


def test_missing_referenced_object_is_a_400_with_param(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.checkout.sessions.create(
            params={"mode": "subscription", "line_items": [{"price": "price_nope", "quantity": 1}]}
        )
    assert excinfo.value.http_status == 400
    assert excinfo.value.param == "line_items[0][price]"
    assert excinfo.value.code == "resource_missing"


def test_request_log_records_decoded_params_keys_and_version_exactly(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    customer = client.v1.customers.create(
        params={"email": "log@example.com", "metadata": {"user_id": "7", "plan": "pro"}},
        options={"idempotency_key": "log-key-1"},
    )
    client.v1.prices.retrieve(prices["pro"], params={"expand": ["product"]})
    _, subscription, _ = subscribe(client, server, prices["pro"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    phase_start = schedule.phases[0].start_date
    phase_end = schedule.phases[0].end_date
    client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "phases": [
                {"items": [{"price": prices["pro"], "quantity": 1}], "start_date": phase_start, "end_date": phase_end},
                {"items": [{"price": prices["business"], "quantity": 1}], "duration": {"interval": "month"}},
            ],
            "end_behavior": "release",
        },
        options={"idempotency_key": "schedule-edit"},
    )

    log = control(server, "GET /_fake/requests")["requests"]
    assert log[0] == {
        "method": "POST",
        "path": "/v1/customers",
        "params": {"email": "log@example.com", "metadata": {"user_id": "7", "plan": "pro"}},
        "idempotency_key": "log-key-1",
        "stripe_version": stripe.api_version,
    }
    assert log[1] == {
        "method": "GET",
        "path": f"/v1/prices/{prices['pro']}",
        "params": {"expand": ["product"]},
        "idempotency_key": None,
        "stripe_version": stripe.api_version,
    }
    assert log[-1] == {
        "method": "POST",
        "path": f"/v1/subscription_schedules/{schedule.id}",
        "params": {
            "phases": [
                {
                    "items": [{"price": prices["pro"], "quantity": "1"}],
                    "start_date": str(phase_start),
                    "end_date": str(phase_end),
                },
                {"items": [{"price": prices["business"], "quantity": "1"}], "duration": {"interval": "month"}},
            ],
            "end_behavior": "release",
        },
        "idempotency_key": "schedule-edit",
        "stripe_version": stripe.api_version,
    }
    # SDK POSTs without an explicit key still carry an auto-generated one.
    sdk_posts = [entry for entry in log if entry["method"] == "POST"]
    assert all(entry["idempotency_key"] for entry in sdk_posts)
    assert customer.id.startswith("cus_")


def test_fail_next_500_raises_api_error_once_without_sdk_retries(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    armed = control(server, "/_fake/fail_next", {"path_prefix": "/v1/subscriptions", "status": "500"})
    assert armed["failure"]["status"] == 500

    # The global API retries 5xx twice by default; the fake tells it not to.
    monkeypatch.setattr(stripe, "api_key", API_KEY)
    monkeypatch.setattr(stripe, "api_base", server.base_url)
    with pytest.raises(stripe.APIError) as excinfo:
        stripe.Subscription.retrieve(subscription.id)
    assert excinfo.value.http_status == 500
    assert not isinstance(excinfo.value, stripe.InvalidRequestError)

    again = stripe.Subscription.retrieve(subscription.id)
    assert again.id == subscription.id
    hits = [r for r in server.state.logged_requests() if r["path"] == f"/v1/subscriptions/{subscription.id}"]
    assert len(hits) == 3  # subscribe() + the failed one (not retried) + the one that worked


def test_fail_next_402_raises_card_error(client: stripe.StripeClient, server: FakeStripeServer) -> None:
    control(server, "/_fake/fail_next", {"path_prefix": "/v1/customers", "status": "402", "method": "POST"})
    client.v1.customers.list()  # a GET does not match method=POST
    with pytest.raises(stripe.CardError) as excinfo:
        client.v1.customers.create(params={"email": "declined@example.com"})
    assert excinfo.value.http_status == 402
    assert excinfo.value.code == "card_declined"
    assert client.v1.customers.list().data == []
    created = client.v1.customers.create(params={"email": "declined@example.com"})
    assert created.email == "declined@example.com"


# ---------------------------------------------------------------------------
# catalogue and checkout
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# subscription lifecycle
# ---------------------------------------------------------------------------


def test_price_change_with_always_invoice_creates_proration_invoice(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    item = subscription["items"].data[0]
    first_invoice = subscription.latest_invoice
    mark = len(server.state.events)

    updated = client.v1.subscriptions.update(
        subscription.id,
        params={"items": [{"id": item.id, "price": prices["business"]}], "proration_behavior": "always_invoice"},
    )
    new_item = updated["items"].data[0]
    assert new_item.id == item.id
    assert new_item.price.id == prices["business"]
    assert new_item.price.unit_amount == 10000
    assert updated.latest_invoice != first_invoice

    invoice = client.v1.invoices.retrieve(str(updated.latest_invoice))
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid"
    amounts = sorted(line.amount for line in invoice.lines.data)
    assert amounts[0] < 0 < amounts[-1]
    assert 7900 <= invoice.amount_paid <= 8000  # BUSINESS - PRO for (almost) the whole period
    assert all(line["parent"]["subscription_item_details"]["proration"] for line in invoice.lines.data)

    events = server.state.all_events()[mark:]
    assert types_of(events)[0] == "customer.subscription.updated"
    assert "invoice.paid" in types_of(events)
    previous = events[0]["data"]["previous_attributes"]
    assert previous["items"]["data"][0]["price"]["id"] == prices["pro"]


def test_cancel_at_period_end_then_advance_cancels(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    customer_id, subscription, _ = subscribe(client, server, prices["pro"])
    period_end = subscription["current_period_end"]
    pending = client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": True})
    assert pending.status == "active"
    assert pending.cancel_at_period_end is True
    assert pending.cancel_at == period_end

    advanced = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert advanced["event_types"] == ["customer.subscription.deleted"]
    deleted = advanced["events"][0]["data"]["object"]
    assert deleted["status"] == "canceled"
    assert deleted["ended_at"] == period_end

    canceled = client.v1.subscriptions.retrieve(subscription.id)
    assert canceled.status == "canceled"
    assert client.v1.subscriptions.list(params={"customer": customer_id}).data == []
    every = client.v1.subscriptions.list(params={"customer": customer_id, "status": "all"})
    assert [s.id for s in every.data] == [subscription.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": False})


def test_advance_renews_with_a_paid_invoice(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    old_end = subscription["current_period_end"]
    advanced = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert "customer.subscription.updated" in advanced["event_types"]
    assert advanced["event_types"][-2:] == ["invoice.paid", "invoice.payment_succeeded"]
    renewed = client.v1.subscriptions.retrieve(subscription.id)
    assert renewed.status == "active"
    assert renewed["current_period_start"] == old_end
    assert renewed["items"].data[0].current_period_end == old_end + 30 * DAY
    invoice = client.v1.invoices.retrieve(str(renewed.latest_invoice))
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.amount_paid == 2000


def test_cancel_immediately(client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    canceled = client.v1.subscriptions.cancel(subscription.id)
    assert canceled.status == "canceled"
    assert canceled.canceled_at is not None
    assert server.state.all_events()[-1]["type"] == "customer.subscription.deleted"


def test_schedule_two_phases_switches_price_then_releases(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["business"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    assert schedule.id.startswith("sub_sched_")
    assert schedule.status == "active"
    assert schedule.subscription == subscription.id
    assert len(schedule.phases) == 1
    assert schedule.phases[0]["items"][0].price == prices["business"]
    assert client.v1.subscriptions.retrieve(subscription.id).schedule == schedule.id

    phase = schedule.phases[0]
    modified = client.v1.subscription_schedules.update(
        schedule.id,
        params={
            "phases": [
                {
                    "items": [{"price": prices["business"], "quantity": 1}],
                    "start_date": phase.start_date,
                    "end_date": phase.end_date,
                },
                {"items": [{"price": prices["pro"], "quantity": 1}], "proration_behavior": "none"},
            ],
            "end_behavior": "release",
        },
    )
    assert [p["items"][0].price for p in modified.phases] == [prices["business"], prices["pro"]]
    assert modified.phases[1].start_date == phase.end_date
    assert modified.phases[1].end_date == phase.end_date + 30 * DAY

    # End of phase 1: the downgrade takes effect, the schedule moves to its last phase.
    first = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert "customer.subscription.updated" in first["event_types"]
    switched = client.v1.subscriptions.retrieve(subscription.id)
    assert switched["items"].data[0].price.id == prices["pro"]
    assert switched.schedule == schedule.id
    assert client.v1.invoices.retrieve(str(switched.latest_invoice)).amount_paid == 2000
    in_last_phase = client.v1.subscription_schedules.retrieve(schedule.id)
    assert in_last_phase.status == "active"
    assert in_last_phase.current_phase is not None
    assert in_last_phase.current_phase.start_date == phase.end_date

    # End of the last phase: end_behavior=release lets the subscription run on its own.
    second = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert "subscription_schedule.released" in second["event_types"]
    done = client.v1.subscription_schedules.retrieve(schedule.id)
    assert done.status == "released"
    assert done.released_subscription == subscription.id
    assert done.subscription is None
    free_running = client.v1.subscriptions.retrieve(subscription.id)
    assert free_running.schedule is None
    assert free_running.status == "active"
    assert free_running["items"].data[0].price.id == prices["pro"]


def test_schedule_end_behavior_cancel_completes_and_cancels(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    client.v1.subscription_schedules.update(schedule.id, params={"end_behavior": "cancel"})
    advanced = control(server, f"/_fake/subscriptions/{subscription.id}/advance")
    assert advanced["event_types"] == ["subscription_schedule.completed", "customer.subscription.deleted"]
    completed = client.v1.subscription_schedules.retrieve(schedule.id)
    assert completed.status == "completed"
    assert completed.completed_at == subscription["current_period_end"]
    assert client.v1.subscriptions.retrieve(subscription.id).status == "canceled"


def test_release_twice_raises_invalid_request(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    released = client.v1.subscription_schedules.release(schedule.id)
    assert released.status == "released"
    assert released.released_subscription == subscription.id
    assert client.v1.subscriptions.retrieve(subscription.id).schedule is None
    assert server.state.all_events()[-2]["type"] == "subscription_schedule.released"

    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.subscription_schedules.release(schedule.id)
    assert excinfo.value.http_status == 400
    assert "`released` status" in str(excinfo.value.user_message)


def test_schedule_refuses_a_subscription_already_on_a_schedule(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    with pytest.raises(stripe.InvalidRequestError, match="already attached to a schedule"):
        client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    with pytest.raises(stripe.InvalidRequestError, match="managed by the subscription schedule"):
        client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": True})


def test_failed_update_changes_nothing_and_emits_nothing(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    events_before = len(server.state.all_events())
    item = subscription["items"].data[0]
    with pytest.raises(stripe.InvalidRequestError) as excinfo:
        client.v1.subscriptions.update(
            subscription.id,
            params={"cancel_at_period_end": True, "items": [{"id": item.id, "price": "price_missing"}]},
        )
    assert excinfo.value.param == "items[0][price]"
    unchanged = client.v1.subscriptions.retrieve(subscription.id)
    assert unchanged.cancel_at_period_end is False
    assert unchanged["items"].data[0].price.id == prices["pro"]
    assert len(server.state.all_events()) == events_before


def test_schedule_phase_iterations_is_rejected_like_the_pinned_api_version(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": subscription.id})
    status, _, body = raw_request(
        server,
        "POST",
        f"/v1/subscription_schedules/{schedule.id}",
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-www-form-urlencoded"},
        f"phases[0][items][0][price]={prices['pro']}&phases[0][iterations]=2",
    )
    assert status == 400
    assert json.loads(body)["error"]["param"] == "phases[0][iterations]"


def test_invoice_failure_then_recovery(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    failed = control(server, "/_fake/invoices/fail", {"subscription": subscription.id})
    assert "invoice.payment_failed" in failed["event_types"]
    assert failed["event_types"][-1] == "customer.subscription.updated"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "past_due"
    invoice = client.v1.invoices.retrieve(failed["object"]["id"])
    assert invoice.status == "open"
    assert invoice.attempt_count == 1

    paid = control(server, f"/_fake/invoices/{invoice.id}/pay")
    assert "invoice.paid" in paid["event_types"]
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"


def test_dispute_emits_charge_dispute_created(client: stripe.StripeClient, server: FakeStripeServer) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price_data": {"currency": "usd", "unit_amount": 900, "product_data": {"name": "Pack"}}}],
        }
    )
    control(server, f"/_fake/checkout/{session.id}/complete")
    intent = client.v1.payment_intents.retrieve(str(client.v1.checkout.sessions.retrieve(session.id).payment_intent))
    disputed = control(server, f"/_fake/charges/{intent.latest_charge}/dispute", {"reason": "fraudulent"})
    assert disputed["event_types"] == ["charge.dispute.created"]
    dispute = disputed["events"][0]["data"]["object"]
    assert dispute["charge"] == intent.latest_charge
    assert dispute["amount"] == 900
    assert dispute["payment_intent"] == intent.id


# ---------------------------------------------------------------------------
# events, webhooks, SDK global configuration
# ---------------------------------------------------------------------------


def test_events_list_newest_first_with_type_filter_and_retrieve(
    client: stripe.StripeClient, server: FakeStripeServer, prices: dict[str, str]
) -> None:
    _, subscription, _ = subscribe(client, server, prices["pro"])
    client.v1.subscriptions.update(subscription.id, params={"metadata": {"note": "x"}})
    everything = server.state.all_events()

    newest = client.v1.events.list(params={"limit": 3})
    assert [e.id for e in newest.data] == [e["id"] for e in reversed(everything[-3:])]
    assert newest.has_more is True

    updated = client.v1.events.list(params={"type": "customer.subscription.updated"})
    assert len(updated.data) == 1
    event = client.v1.events.retrieve(updated.data[0].id)
    assert event.type == "customer.subscription.updated"
    assert event.api_version == stripe.api_version
    assert event.livemode is False
    assert event.pending_webhooks == 1
    assert event.data.object["metadata"] == {"note": "x"}
    assert event.data.previous_attributes == {"metadata": {}}
    assert event["request"]["id"].startswith("req_")  # `event.request` is the SDK's request() method

    wildcard = client.v1.events.list(params={"type": "invoice.*", "limit": 100})
    assert {e.type for e in wildcard.data} == {
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    }

    page = client.v1.events.list(params={"limit": 2, "starting_after": newest.data[1].id})
    assert page.data[0].id == newest.data[2].id


def test_signed_payload_passes_construct_event_and_tampering_fails(
    client: stripe.StripeClient, server: FakeStripeServer
) -> None:
    client.v1.customers.create(params={"email": "sig@example.com"})
    event = server.state.all_events()[-1]
    payload = event_payload(event)
    assert payload == event_payload(json.loads(payload))  # stable
    header = sign_payload(payload, WEBHOOK_SECRET)
    assert header.startswith("t=")
    assert ",v1=" in header

    verified = construct_event(payload, header, WEBHOOK_SECRET)
    assert verified.id == event["id"]
    assert verified.type == "customer.created"

    tampered = payload.replace("sig@example.com", "evil@example.com")
    with pytest.raises(stripe.SignatureVerificationError):
        construct_event(tampered, header, WEBHOOK_SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        construct_event(payload, header, "whsec_other")
    with pytest.raises(stripe.SignatureVerificationError):
        construct_event(payload, sign_payload(payload, WEBHOOK_SECRET, timestamp=1_000_000), WEBHOOK_SECRET)


def test_webhook_forwarding_delivers_signed_events_in_order() -> None:
    received: list[tuple[str, str]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{receiver.server_port}/billing/webhook/"
        with FakeStripeServer(webhook_url=url, webhook_secret=WEBHOOK_SECRET) as fake:
            sdk = stripe.StripeClient(API_KEY, base_addresses={"api": fake.base_url})
            sdk.v1.customers.create(params={"email": "one@example.com"})
            sdk.v1.customers.create(params={"email": "two@example.com"})
            assert fake.webhooks is not None
            assert fake.webhooks.wait_idle(10)
            deliveries = control(fake, "GET /_fake/webhooks")["deliveries"]
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert [d["status"] for d in deliveries] == [200, 200]
    emails = [construct_event(body, signature, WEBHOOK_SECRET).data.object["email"] for body, signature in received]
    assert emails == ["one@example.com", "two@example.com"]


def test_global_sdk_configuration_reaches_the_fake(
    server: FakeStripeServer, prices: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stripe, "api_key", API_KEY)
    monkeypatch.setattr(stripe, "api_base", server.base_url)
    customer = stripe.Customer.create(email="global@example.com")
    assert customer.id.startswith("cus_")
    assert stripe.Price.retrieve(prices["business"]).unit_amount == 10000


def test_reset_clears_state(client: stripe.StripeClient, server: FakeStripeServer) -> None:
    client.v1.customers.create(params={"email": "gone@example.com"}, options={"idempotency_key": "k"})
    assert control(server, "/_fake/reset") == {"ok": True, "events": []}
    assert server.state.all_events() == []
    assert control(server, "GET /_fake/requests") == {"requests": []}
    again = client.v1.customers.create(params={"email": "gone@example.com"}, options={"idempotency_key": "k"})
    assert [c.id for c in client.v1.customers.list().data] == [again.id]


# ---------------------------------------------------------------------------
# pure units (no HTTP)
# ---------------------------------------------------------------------------


def test_parse_form_decodes_stripe_nested_encoding() -> None:
    raw = (
        "items[0][id]=si_1&items[0][price]=price_b&metadata[user_id]=7&metadata[0]=zero"
        "&phases[0][items][0][price]=price_a&phases[1][items][0][price]=price_b&phases[1][duration][interval]=month"
        "&expand[]=latest_invoice&expand[]=customer&cancel_at_period_end=true&description="
    )
    assert parse_form(raw) == {
        "items": [{"id": "si_1", "price": "price_b"}],
        "metadata": {"user_id": "7", "0": "zero"},
        "phases": [
            {"items": [{"price": "price_a"}]},
            {"items": [{"price": "price_b"}], "duration": {"interval": "month"}},
        ],
        "expand": ["latest_invoice", "customer"],
        "cancel_at_period_end": "true",
        "description": "",
    }


def test_state_machine_without_http() -> None:
    clock = [1_700_000_000]
    state = FakeStripeState(clock=lambda: clock[0], api_version="2099-01-01.test")
    price = state.seed_price("pro", 2000)
    customer = state.create_customer({"email": "unit@example.com", "metadata": {"user_id": "1"}})
    subscription = state.create_subscription({"customer": customer["id"], "items": [{"price": price}]})
    assert subscription["status"] == "active"
    assert subscription["current_period_start"] == clock[0]
    assert subscription["current_period_end"] == clock[0] + 30 * DAY
    clock[0] += 15 * DAY
    state.update_subscription(subscription["id"], {"cancel_at_period_end": "true"})
    result = state.advance_subscription(subscription["id"])
    assert [e["type"] for e in result["events"]] == ["customer.subscription.deleted"]
    assert state.retrieve("subscription", subscription["id"])["status"] == "canceled"
    assert {e["api_version"] for e in state.all_events()} == {"2099-01-01.test"}
    assert state.all_events()[0]["request"] == {"id": None, "idempotency_key": None}
