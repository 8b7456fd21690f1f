"""Customers: create, update, delete, list."""

from __future__ import annotations

import copy
import secrets
import string
from collections.abc import Mapping

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    apply_metadata,
    list_param,
    opt_str,
    sub_params,
)
from copilot_site.testing.fake_stripe.store import (
    FakeStripeStore,
    locked,
    mutation,
    new_id,
)


class Customers(FakeStripeStore):
    """Customer objects."""

    def _customer(self, customer_id: str, param: str = "customer") -> StripeObj:
        customer = self._get("customer", customer_id, param=param, status=400)
        if customer.get("deleted"):
            raise FakeStripeError(f"No such customer: '{customer_id}'", code="resource_missing", param=param)
        return customer

    def _new_customer(
        self, *, email: str | None, name: str | None, metadata: Mapping[str, str], params: Params | None = None
    ) -> StripeObj:
        customer: StripeObj = {
            "id": new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self._now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": email,
            "invoice_prefix": "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8)),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": dict(metadata),
            "name": name,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        if params is not None:
            self._apply_customer_fields(customer, params)
        self._store(customer)
        self._emit("customer.created", customer)
        return customer

    @mutation
    def create_customer(self, params: Params) -> StripeObj:
        customer = self._new_customer(
            email=opt_str(params, "email"),
            name=opt_str(params, "name"),
            metadata=apply_metadata({}, params.get("metadata")),
            params=params,
        )
        return copy.deepcopy(customer)

    @staticmethod
    def _apply_customer_fields(customer: StripeObj, params: Params) -> None:
        for key in ("email", "name", "description", "phone"):
            if key in params:
                customer[key] = opt_str(params, key)
        if "metadata" in params:
            customer["metadata"] = apply_metadata(customer["metadata"], params["metadata"])
        if "preferred_locales" in params:
            customer["preferred_locales"] = [str(x) for x in list_param(params, "preferred_locales")]
        invoice_settings = sub_params(params, "invoice_settings")
        if "default_payment_method" in invoice_settings:
            customer["invoice_settings"]["default_payment_method"] = opt_str(
                invoice_settings, "default_payment_method", "invoice_settings[default_payment_method]"
            )

    @mutation
    def update_customer(self, customer_id: str, params: Params) -> StripeObj:
        customer = self._get("customer", customer_id)
        if customer.get("deleted"):
            raise FakeStripeError(f"No such customer: '{customer_id}'", status=404, code="resource_missing", param="id")
        before = copy.deepcopy(customer)
        self._apply_customer_fields(customer, params)
        self._emit_updated("customer.updated", customer, before)
        return copy.deepcopy(customer)

    def _customer_deleting(self, customer_id: str) -> None:
        """Runs inside ``delete_customer`` before the customer goes; what belongs to a customer extends it."""

    @mutation
    def delete_customer(self, customer_id: str) -> StripeObj:
        customer = self._get("customer", customer_id)
        if customer.get("deleted"):
            raise FakeStripeError(f"No such customer: '{customer_id}'", status=404, code="resource_missing", param="id")
        self._customer_deleting(customer_id)
        snapshot = copy.deepcopy(customer)
        stub: StripeObj = {"id": customer_id, "object": "customer", "deleted": True}
        self.objects[customer_id] = stub
        self._emit("customer.deleted", snapshot)
        return copy.deepcopy(stub)

    @locked
    def list_customers(self, params: Params) -> StripeObj:
        customers = [c for c in self._all("customer") if not c.get("deleted")]
        customers = self._filter_eq(customers, params, {"email": lambda c: c.get("email")})
        return self._paginate(customers, params, "/v1/customers")
