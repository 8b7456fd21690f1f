"""Billing portal sessions."""

from __future__ import annotations

import copy

from copilot_site.testing.fake_stripe.customers import Customers
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    opt_str,
    req_str,
)
from copilot_site.testing.fake_stripe.store import (
    mutation,
    new_id,
)


class BillingPortal(Customers):
    """Billing portal session objects."""

    @mutation
    def create_billing_portal_session(self, params: Params) -> StripeObj:
        customer = self._customer(req_str(params, "customer"))
        session_id = new_id("bps_")
        session: StripeObj = {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": "bpc_fake",
            "created": self._now(),
            "customer": customer["id"],
            "flow": None,
            "livemode": False,
            "locale": opt_str(params, "locale"),
            "on_behalf_of": None,
            "return_url": opt_str(params, "return_url"),
            "url": f"{self.base_url}/billing_portal/{session_id}",
        }
        self._store(session)
        return copy.deepcopy(session)
