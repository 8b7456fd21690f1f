"""Fixtures and helpers for the fake Stripe server tests, driven by the real ``stripe`` SDK over HTTP.

No Django and no database: every test starts its own server on a free loopback
port and talks to it through ``stripe.StripeClient`` (or the SDK's global API).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe

from copilot_site.testing.fake_stripe import FakeStripeServer

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
