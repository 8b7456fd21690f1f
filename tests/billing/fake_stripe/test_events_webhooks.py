"""The fake Stripe event log and webhooks: listing, signing, forwarding, and the SDK's global configuration."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from copilot_site.testing.fake_stripe import FakeStripeServer, event_payload, sign_payload
from tests.billing.fake_stripe.conftest import (
    API_KEY,
    WEBHOOK_SECRET,
    construct_event,
    control,
    subscribe,
)


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
