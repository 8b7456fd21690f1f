"""Billing fixtures: the project's fake Stripe server over real HTTP, driven by the real SDK.

Every test that touches Stripe gets its own ``FakeStripeServer`` on a free loopback
port, with the settings pointing the gateway at it. Webhooks are delivered to our
endpoint signed in Stripe's scheme (``copilot_site.testing.fake_stripe.signing``), verified by the real SDK.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from django.test import Client, TestCase

from billing.models import CustomerAccount, Tier
from copilot_site.testing.fake_stripe import FakeStripeServer, event_payload, sign_payload

API_KEY = "sk_test_billing_suite"
WEBHOOK_SECRET = "whsec_billing_suite"
FRONTEND = "https://app.example.com"
PRO_CENTS = 2000
BUSINESS_CENTS = 10000


@dataclass
class FakeStripe:
    """The running fake plus helpers to read what our code asked of it."""

    server: FakeStripeServer
    prices: dict[str, str]
    delivered: int = 0  # events already delivered to our webhook
    webhook_client: Client = field(default_factory=Client)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def control(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a form to a ``/_fake/`` control endpoint."""
        data = urllib.parse.urlencode(params or {}).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback fake
            payload: dict[str, Any] = json.load(response)
        return payload

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as response:  # noqa: S310 - loopback fake
            return json.load(response)

    def requests(self) -> list[dict[str, Any]]:
        """Every API call so far (``GET /_fake/requests``): method, path, params, idempotency_key."""
        result: list[dict[str, Any]] = self.get("/_fake/requests")["requests"]
        return result

    def calls(self) -> list[str]:
        """``"METHOD /path"`` of every API call so far, in order."""
        return [f"{r['method']} {r['path']}" for r in self.requests()]

    def calls_since(self, mark: int, *, prices: bool = False) -> list[str]:
        """Calls after ``mark``; price reads (the tier costs of every status reply) only if ``prices``."""
        calls = self.calls()[mark:]
        return calls if prices else [c for c in calls if not c.startswith("GET /v1/prices/")]

    def mark(self) -> int:
        return len(self.requests())

    def events(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/_fake/events")["events"]
        return result

    def fail_next(self, path_prefix: str, status: int = 500, **params: Any) -> None:
        self.control("/_fake/fail_next", {"path_prefix": path_prefix, "status": status, **params})

    def deliver(self, event: dict[str, Any]) -> Any:
        """Sign ``event`` like Stripe does and POST it to our webhook (on-commit work runs)."""
        with committed():
            return post_event(self.webhook_client, event)

    def deliver_new_events(self, *, skip: tuple[str, ...] = ()) -> list[tuple[str, int]]:
        """Deliver, in order, every event the fake emitted since the last delivery."""
        events = self.events()
        fresh, self.delivered = events[self.delivered :], len(events)
        results = []
        for event in fresh:
            if event["type"] in skip:
                continue
            response = self.deliver(event)
            results.append((event["type"], response.status_code))
        return results

    def skip_events(self) -> None:
        """Forget the events emitted so far (they will not be delivered)."""
        self.delivered = len(self.events())

    def subscription(self, sub_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.server.state.retrieve("subscription", sub_id)
        return result


def committed() -> Any:
    """Run the on-commit callbacks of the block, as a real commit would (tests run inside a transaction)."""
    return TestCase.captureOnCommitCallbacks(execute=True)


def post_event(
    client: Client, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, signature: str | None = None
) -> Any:
    payload = event_payload(event)
    header = signature if signature is not None else sign_payload(payload, secret)
    return client.post(
        "/api/billing/stripe/webhook", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


@pytest.fixture
def fake_stripe(settings: Any) -> Iterator[FakeStripe]:
    """A fresh fake Stripe with PRO/BUSINESS prices; settings point the gateway at it, payments on."""
    with FakeStripeServer() as server:
        prices = {
            Tier.PRO: server.state.seed_price("pro_monthly", PRO_CENTS),
            Tier.BUSINESS: server.state.seed_price("business_monthly", BUSINESS_CENTS),
        }
        settings.STRIPE_SECRET_KEY = API_KEY
        settings.STRIPE_API_BASE = server.base_url
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        settings.STRIPE_TIMEOUT_S = 5.0
        settings.ENABLE_PLATFORM_PAYMENT = True
        settings.ENABLE_CREDIT = True
        settings.STRIPE_PRICE_PRO = prices[Tier.PRO]
        settings.STRIPE_PRICE_BUSINESS = prices[Tier.BUSINESS]
        settings.FRONTEND_BASE_URL = FRONTEND
        yield FakeStripe(server=server, prices=prices)


@dataclass
class TaskCalls:
    drift_check: mock.Mock
    cleanup_stale: mock.Mock


@pytest.fixture(autouse=True)
def billing_task_calls() -> Iterator[TaskCalls]:
    """Billing's Celery enqueues, recorded instead of sent (no broker messages leak between tests)."""
    with (
        mock.patch("billing.tasks.subscription_drift_check.delay") as drift,
        mock.patch("billing.tasks.subscription_cleanup_stale.delay") as cleanup,
    ):
        yield TaskCalls(drift_check=drift, cleanup_stale=cleanup)


def account_of(user: Any) -> CustomerAccount:
    return CustomerAccount.objects.get(user=user)


def subscribe(fake: FakeStripe, client: Any, user: Any, tier: str) -> dict[str, Any]:
    """FREE → ``tier`` the way a user does it: POST, pay at Checkout, webhooks delivered.

    Returns the Stripe subscription.
    """
    with committed():
        response = client.post(
            "/api/billing/subscription",
            {"tier": tier, "success_url": f"{FRONTEND}/billing?ok=1", "cancel_url": f"{FRONTEND}/billing"},
            format="json",
        )
    assert response.status_code == 200, response.content
    session_id = response.json()["url"].rsplit("/", 1)[-1]
    completed = fake.control(f"/_fake/checkout/{session_id}/complete")
    results = fake.deliver_new_events()
    assert all(status == 200 for _, status in results), results
    account = account_of(user)
    assert account.tier == tier
    return fake.subscription(completed["object"]["subscription"])
