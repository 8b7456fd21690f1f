"""Checkout sessions: create, list, expire, and the control that completes one as the customer paying."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    apply_metadata,
    as_bool,
    list_param,
    missing_param,
    opt_int,
    opt_str,
    req_str,
    sub_params,
)
from copilot_site.testing.fake_stripe.store import (
    DAY,
    locked,
    mutation,
    new_id,
)
from copilot_site.testing.fake_stripe.subscriptions import Subscriptions


class CheckoutSessions(Subscriptions):
    """Checkout session objects."""

    @mutation
    def create_checkout_session(self, params: Params) -> StripeObj:
        now = self._now()
        mode = req_str(params, "mode")
        if mode not in ("payment", "subscription"):
            raise FakeStripeError(
                f"The fake Stripe server supports checkout mode `payment` and `subscription`, not `{mode}`.",
                param="mode",
            )
        customer_id, customer_email, customer_creation = self._checkout_customer(params, mode)
        line_items = self._checkout_line_items(params, mode)
        subscription_data = sub_params(params, "subscription_data")
        apply_metadata({}, subscription_data.get("metadata"), "subscription_data[metadata]")
        trial_days = opt_int(subscription_data, "trial_period_days", "subscription_data[trial_period_days]")
        if trial_days is not None and trial_days < 1:
            raise FakeStripeError("trial_period_days must be at least 1", param="subscription_data[trial_period_days]")
        payment_intent_data = sub_params(params, "payment_intent_data")
        apply_metadata({}, payment_intent_data.get("metadata"), "payment_intent_data[metadata]")

        session = self._new_checkout_session(
            params,
            mode,
            line_items,
            now=now,
            customer_id=customer_id,
            customer_email=customer_email,
            customer_creation=customer_creation,
        )
        session_id: str = session["id"]
        self._store(session)
        self._line_items[session_id] = line_items
        # Kept off the public object: what completion needs from the create params.
        self._checkout_extra[session_id] = {
            "subscription_metadata": apply_metadata({}, subscription_data.get("metadata")),
            "subscription_description": opt_str(subscription_data, "description", "subscription_data[description]"),
            "trial_period_days": trial_days,
            "payment_intent_metadata": apply_metadata({}, payment_intent_data.get("metadata")),
            "payment_intent_description": opt_str(
                payment_intent_data, "description", "payment_intent_data[description]"
            ),
        }
        return copy.deepcopy(session)

    def _checkout_customer(self, params: Params, mode: str) -> tuple[str | None, str | None, str | None]:
        """``customer``, ``customer_email`` and ``customer_creation``, checked against each other and the mode."""
        customer_id = opt_str(params, "customer")
        customer_email = opt_str(params, "customer_email")
        if customer_id is not None and customer_email is not None:
            raise FakeStripeError(
                "You may only specify one of these parameters: customer, customer_email.", param="customer_email"
            )
        if customer_id is not None:
            self._customer(customer_id)
        customer_creation = opt_str(params, "customer_creation")
        if customer_creation is not None:
            if mode == "subscription":
                raise FakeStripeError(
                    "`customer_creation` can only be used in `payment` and `setup` mode.", param="customer_creation"
                )
            if customer_creation not in ("always", "if_required"):
                raise FakeStripeError("Invalid customer_creation", param="customer_creation")
        return customer_id, customer_email, customer_creation

    def _checkout_line_items(self, params: Params, mode: str) -> list[StripeObj]:
        """The session's line items from ``line_items`` (a ``price`` or ``price_data`` each, one currency)."""
        raw_items = list_param(params, "line_items")
        if not raw_items:
            raise missing_param("line_items")
        line_items: list[StripeObj] = []
        currency: str | None = None
        for i, raw in enumerate(raw_items):
            p = f"line_items[{i}]"
            if not isinstance(raw, Mapping):
                raise FakeStripeError(f"Invalid object: {p}", param=p)
            price_id = opt_str(raw, "price", f"{p}[price]")
            price_data = sub_params(raw, "price_data", f"{p}[price_data]")
            if (price_id is None) == (not price_data):
                raise FakeStripeError(f"You must specify either `price` or `price_data` in {p}.", param=p)
            if price_id is not None:
                price = self._price(price_id, f"{p}[price]")
                if not price["active"]:
                    raise FakeStripeError(f"The price specified is inactive: {price_id}", param=f"{p}[price]")
            else:
                price = self._price_from_params(price_data, f"{p}[price_data]", emit=False, active=False)
            if currency is not None and price["currency"] != currency:
                raise FakeStripeError("All line items must have the same currency.", param=f"{p}[price]")
            currency = price["currency"]
            if mode == "payment" and price.get("recurring"):
                raise FakeStripeError(
                    "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode "
                    "or use only one-time prices.",
                    param=f"{p}[price]",
                )
            quantity = opt_int(raw, "quantity", f"{p}[quantity]")
            quantity = 1 if quantity is None else quantity
            if quantity < 1:
                raise FakeStripeError("Quantity must be at least 1.", param=f"{p}[quantity]")
            amount = price["unit_amount"] * quantity
            line_items.append(
                {
                    "id": new_id("li_"),
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": price["currency"],
                    "description": self._product_name(price),
                    "price": copy.deepcopy(price),
                    "quantity": quantity,
                }
            )
        if mode == "subscription" and not any(li["price"].get("recurring") for li in line_items):
            raise FakeStripeError(
                "You must specify at least one recurring price in `subscription` mode when using prices.",
                param="line_items",
            )
        return line_items

    def _new_checkout_session(
        self,
        params: Params,
        mode: str,
        line_items: list[StripeObj],
        *,
        now: int,
        customer_id: str | None,
        customer_email: str | None,
        customer_creation: str | None,
    ) -> StripeObj:
        """The open session object (not stored yet)."""
        currency: str = line_items[-1]["currency"]
        total = sum(int(li["amount_total"]) for li in line_items)
        session_id = new_id("cs_test_", 58)
        session: StripeObj = {
            "id": session_id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": (
                as_bool(params["allow_promotion_codes"], "allow_promotion_codes")
                if "allow_promotion_codes" in params
                else None
            ),
            "amount_subtotal": total,
            "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": opt_str(params, "billing_address_collection"),
            "cancel_url": opt_str(params, "cancel_url"),
            "client_reference_id": opt_str(params, "client_reference_id"),
            "client_secret": None,
            "created": now,
            "currency": currency,
            "customer": customer_id,
            "customer_creation": (customer_creation or "if_required")
            if mode == "payment" and not customer_id
            else None,
            "customer_details": None,
            "customer_email": customer_email,
            "expires_at": opt_int(params, "expires_at") or now + DAY,
            "invoice": None,
            "livemode": False,
            "locale": opt_str(params, "locale"),
            "metadata": apply_metadata({}, params.get("metadata")),
            "mode": mode,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always",
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "submit_type": opt_str(params, "submit_type"),
            "subscription": None,
            "success_url": opt_str(params, "success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": opt_str(params, "ui_mode") or "hosted",
            "url": f"{self.base_url}/checkout/{session_id}",
        }
        return session

    @locked
    def list_checkout_sessions(self, params: Params) -> StripeObj:
        sessions = self._filter_eq(
            self._all("checkout.session"),
            params,
            {
                "customer": lambda s: s["customer"],
                "subscription": lambda s: s["subscription"],
                "payment_intent": lambda s: s["payment_intent"],
                "status": lambda s: s["status"],
            },
        )
        return self._paginate(sessions, params, "/v1/checkout/sessions")

    @locked
    def list_checkout_line_items(self, session_id: str, params: Params) -> StripeObj:
        self._get("checkout.session", session_id)
        items = list(self._line_items.get(session_id, []))  # listed in the order they were given
        return self._paginate(items, params, f"/v1/checkout/sessions/{session_id}/line_items")

    @mutation
    def expire_checkout_session(self, session_id: str) -> StripeObj:
        session = self._get("checkout.session", session_id)
        if session["status"] != "open":
            raise FakeStripeError('Only Checkout Sessions with a status in ["open"] can be expired.')
        session["status"] = "expired"
        self._emit("checkout.session.expired", session)
        return copy.deepcopy(session)

    @mutation
    def complete_checkout_session(self, session_id: str, params: Params) -> StripeObj:
        """Control: the customer pays.  Returns ``{"object": session, "events": [...]}``."""
        mark = len(self.events)
        session = self._get("checkout.session", session_id)
        if session["status"] != "open":
            raise FakeStripeError(f"This Checkout Session is not open (status: `{session['status']}`).")
        extra = self._checkout_extra.get(session_id, {})
        email = opt_str(params, "email") or session["customer_email"]
        name = opt_str(params, "name")
        customer_id: str | None = session["customer"]
        if customer_id is not None:
            customer = self._customer(customer_id)
            email = email or customer.get("email")
            name = name or customer.get("name")
        email = email or "customer@example.com"
        if customer_id is None and (session["mode"] == "subscription" or session["customer_creation"] == "always"):
            customer_id = self._new_customer(email=email, name=name, metadata={})["id"]
        session["customer_details"] = {
            "address": None,
            "email": email,
            "name": name,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        line_items = self._line_items.get(session_id, [])
        if session["mode"] == "subscription":
            assert customer_id is not None
            recurring = [(li["price"], int(li["quantity"])) for li in line_items if li["price"].get("recurring")]
            one_time = [(li["price"], int(li["quantity"])) for li in line_items if not li["price"].get("recurring")]
            sub, invoice = self._start_subscription(
                customer_id,
                recurring,
                metadata=extra.get("subscription_metadata", {}),
                trial_days=extra.get("trial_period_days"),
                one_time=one_time,
                description=extra.get("subscription_description"),
            )
            session.update(subscription=sub["id"], invoice=invoice["id"], amount_total=invoice["amount_paid"])
            session["amount_subtotal"] = invoice["subtotal"]
            session["payment_status"] = "paid" if invoice["amount_paid"] > 0 else "no_payment_required"
        else:
            amount: int = session["amount_total"]
            if amount > 0:
                intent, _charge = self._collect_payment(
                    amount,
                    session["currency"],
                    customer_id,
                    description=extra.get("payment_intent_description"),
                    metadata=extra.get("payment_intent_metadata", {}),
                )
                session["payment_intent"] = intent["id"]
            session["payment_status"] = "paid" if amount > 0 else "no_payment_required"
        session.update(status="complete", customer=customer_id)
        self._emit("checkout.session.completed", session)
        return {"object": copy.deepcopy(session), "events": self._events_since(mark)}
