"""A stateful fake of the Stripe API for tests and local development.

Point the official SDK at it with ``stripe.StripeClient(key, base_addresses={"api": server.base_url})``
(or ``stripe.api_base = server.base_url`` for the global API).  ``python -m copilot_site.testing.fake_stripe``
runs it in the foreground.  No module here imports ``stripe``: the fake speaks the wire protocol only.
"""

from __future__ import annotations

from copilot_site.testing.fake_stripe.app import FakeStripeApp
from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.forms import parse_form
from copilot_site.testing.fake_stripe.server import FakeStripeServer
from copilot_site.testing.fake_stripe.signing import event_payload, sign_payload
from copilot_site.testing.fake_stripe.state import FakeStripeState

__all__ = [
    "FakeStripeApp",
    "FakeStripeError",
    "FakeStripeServer",
    "FakeStripeState",
    "event_payload",
    "parse_form",
    "sign_payload",
]
