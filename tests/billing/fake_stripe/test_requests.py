"""The fake Stripe server's request plumbing: auth, idempotency, errors, the request log, injected failures."""

from __future__ import annotations

import json
import threading

import pytest
import stripe
from stripe.params import CustomerCreateParams

from copilot_site.testing.fake_stripe import FakeStripeServer
from tests.billing.fake_stripe.conftest import (
    API_KEY,
    control,
    raw_request,
    subscribe,
)


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
