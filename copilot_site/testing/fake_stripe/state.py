"""``FakeStripeState``: the fake Stripe API's store with every resource it serves.

Object shapes follow the API version the fake pins (``store.API_VERSION``, a ``*.clover`` version,
the one the installed ``stripe`` SDK pins): invoices point at their subscription through
``parent.subscription_details`` and at their payments through ``payments`` (expandable) /
``/v1/invoice_payments``, invoice lines carry ``pricing.price_details`` and
``parent.subscription_item_details``.  Subscriptions carry ``current_period_start``/``current_period_end``
both on the subscription (older versions) and on each item (where current versions put them).
"""

from __future__ import annotations

from copilot_site.testing.fake_stripe.billing_portal import BillingPortal
from copilot_site.testing.fake_stripe.checkout import CheckoutSessions
from copilot_site.testing.fake_stripe.subscription_schedules import SubscriptionSchedules

__all__ = ["FakeStripeState"]


class FakeStripeState(CheckoutSessions, SubscriptionSchedules, BillingPortal):
    """All objects, events, the request log, idempotency records and injected failures, and every resource's
    operations on them (customers, catalogue, payments, invoices, subscriptions and their schedules, checkout,
    billing portal)."""
