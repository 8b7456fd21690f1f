"""A stateful fake of the Stripe API for tests and local development.

Point the official SDK at it with ``stripe.StripeClient(key, base_addresses={"api": server.base_url})``
(or ``stripe.api_base = server.base_url`` for the global API).
"""

from __future__ import annotations

from billing.fake_stripe.server import FakeStripeApp, FakeStripeServer, parse_form
from billing.fake_stripe.signing import event_payload, sign_payload
from billing.fake_stripe.state import FakeStripeError, FakeStripeState

__all__ = [
    "FakeStripeApp",
    "FakeStripeError",
    "FakeStripeServer",
    "FakeStripeState",
    "event_payload",
    "parse_form",
    "sign_payload",
]
