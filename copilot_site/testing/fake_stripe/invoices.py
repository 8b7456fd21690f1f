"""Invoices, their lines and payments; the controls that fail or pay a subscription's invoice."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    money,
    req_str,
)
from copilot_site.testing.fake_stripe.payments import Payments
from copilot_site.testing.fake_stripe.products_prices import ProductsAndPrices
from copilot_site.testing.fake_stripe.store import (
    DAY,
    locked,
    mutation,
    new_id,
)


def _invoice_parent(subscription: StripeObj | None) -> StripeObj | None:
    """What an invoice of a subscription points back at (``parent.subscription_details``)."""
    if subscription is None:
        return None
    return {
        "quote_details": None,
        "subscription_details": {
            "metadata": copy.deepcopy(subscription["metadata"]),
            "subscription": subscription["id"],
        },
        "type": "subscription_details",
    }


class Invoices(Payments, ProductsAndPrices):
    """Invoice objects, from draft to paid or failed."""

    def _line(
        self,
        *,
        amount: int,
        price: Mapping[str, Any],
        quantity: int,
        description: str,
        period_start: int,
        period_end: int,
        subscription_id: str | None,
        item_id: str | None,
        proration: bool,
    ) -> StripeObj:
        if subscription_id is not None:
            parent: StripeObj = {
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription_id,
                    "subscription_item": item_id,
                },
                "type": "subscription_item_details",
            }
        else:
            parent = {
                "invoice_item_details": {
                    "invoice_item": new_id("ii_"),
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
                "type": "invoice_item_details",
            }
        return {
            "id": new_id("il_"),
            "object": "line_item",
            "amount": amount,
            "currency": price["currency"],
            "description": description,
            "discount_amounts": [],
            "discountable": not proration,
            "discounts": [],
            "invoice": None,
            "livemode": False,
            "metadata": {},
            "parent": parent,
            "period": {"end": period_end, "start": period_start},
            "pretax_credit_amounts": [],
            "pricing": {
                "price_details": {"price": price["id"], "product": price["product"]},
                "type": "price_details",
                "unit_amount_decimal": str(price["unit_amount"]),
            },
            "quantity": quantity,
            "taxes": [],
        }

    def _item_line(
        self, sub: StripeObj, item: StripeObj, period_start: int, period_end: int, *, trial: bool
    ) -> StripeObj:
        price, quantity = item["price"], item["quantity"]
        interval = price["recurring"]["interval"] if price.get("recurring") else "month"
        if trial:
            description = f"Trial period for {self._product_name(price)}"
        else:
            description = (
                f"{quantity} × {self._product_name(price)} (at {money(price['unit_amount'], price['currency'])}"
                f" / {interval})"
            )
        return self._line(
            amount=0 if trial else price["unit_amount"] * quantity,
            price=price,
            quantity=quantity,
            description=description,
            period_start=period_start,
            period_end=period_end,
            subscription_id=sub["id"],
            item_id=item["id"],
            proration=False,
        )

    def _draft_invoice(
        self,
        customer_id: str,
        currency: str,
        lines: list[StripeObj],
        *,
        billing_reason: str,
        subscription: StripeObj | None,
        period_start: int,
        period_end: int,
    ) -> StripeObj:
        """A draft invoice, stored but not announced (``_issue_invoice`` emits the events)."""
        now = self._now()
        inv_id = new_id("in_")
        customer = self.objects[customer_id]
        for line in lines:
            line["invoice"] = inv_id
        subtotal = sum(int(line["amount"]) for line in lines)
        invoice: StripeObj = {
            "id": inv_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Fake Stripe",
            "amount_due": max(subtotal, 0),
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": max(subtotal, 0),
            "amount_shipping": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "status": None},
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": currency,
            "customer": customer_id,
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "description": None,
            "discounts": [],
            "due_date": None,
            "ending_balance": None,
            "hosted_invoice_url": f"{self.base_url}/invoices/{inv_id}",
            "invoice_pdf": f"{self.base_url}/invoices/{inv_id}/pdf",
            "last_finalization_error": None,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{inv_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None,
            "number": None,
            "parent": _invoice_parent(subscription),
            "period_end": period_end,
            "period_start": period_start,
            "starting_balance": 0,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": subtotal,
            "total": subtotal,
            "total_discount_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": None,
        }
        return self._store(invoice)

    def _issue_invoice(self, invoice: StripeObj, *, pay: bool) -> None:
        """invoice.created → finalize (applies the customer balance) → pay or fail."""
        self._emit("invoice.created", invoice)
        now = self._now()
        customer = self.objects[invoice["customer"]]
        starting_balance: int = customer.get("balance", 0)
        applied = invoice["total"] + starting_balance
        customer["balance"] = min(applied, 0)
        sequence: int = customer.get("next_invoice_sequence", 1)
        customer["next_invoice_sequence"] = sequence + 1
        invoice.update(
            status="open",
            number=f"{customer.get('invoice_prefix', 'FAKE')}-{sequence:04d}",
            starting_balance=starting_balance,
            ending_balance=min(applied, 0),
            amount_due=max(applied, 0),
            amount_remaining=max(applied, 0),
        )
        invoice["status_transitions"]["finalized_at"] = now
        self._emit("invoice.finalized", invoice)
        if pay:
            self._pay_invoice(invoice)
        else:
            self._fail_invoice(invoice)

    def _pay_invoice(self, invoice: StripeObj) -> None:
        now = self._now()
        amount: int = invoice["amount_remaining"]
        if amount > 0:
            intent, _charge = self._collect_payment(
                amount,
                invoice["currency"],
                invoice["customer"],
                description=(
                    "Subscription creation"
                    if invoice["billing_reason"] == "subscription_create"
                    else "Subscription update"
                ),
            )
            payment: StripeObj = {
                "id": new_id("inpay_"),
                "object": "invoice_payment",
                "amount_paid": amount,
                "amount_requested": amount,
                "created": now,
                "currency": invoice["currency"],
                "invoice": invoice["id"],
                "is_default": True,
                "livemode": False,
                "payment": {"payment_intent": intent["id"], "type": "payment_intent"},
                "status": "paid",
                "status_transitions": {"canceled_at": None, "paid_at": now},
            }
            self._store(payment)
        invoice.update(
            amount_paid=invoice["amount_paid"] + amount,
            amount_remaining=0,
            attempted=True,
            attempt_count=invoice["attempt_count"] + (1 if amount > 0 else 0),
            next_payment_attempt=None,
            status="paid",
        )
        invoice["status_transitions"]["paid_at"] = now
        self._emit("invoice.paid", invoice)
        self._emit("invoice.payment_succeeded", invoice)

    def _fail_invoice(self, invoice: StripeObj) -> None:
        invoice.update(
            attempted=True,
            attempt_count=invoice["attempt_count"] + 1,
            next_payment_attempt=self._now() + 3 * DAY,
        )
        self._emit("invoice.payment_failed", invoice)

    @locked
    def list_invoices(self, params: Params) -> StripeObj:
        invoices = self._filter_eq(
            self._all("invoice"),
            params,
            {
                "customer": lambda i: i["customer"],
                "status": lambda i: i["status"],
                "subscription": lambda i: (i["parent"] or {}).get("subscription_details", {}).get("subscription"),
            },
        )
        return self._paginate(invoices, params, "/v1/invoices")

    @locked
    def list_invoice_lines(self, invoice_id: str, params: Params) -> StripeObj:
        invoice = self._get("invoice", invoice_id)
        return self._paginate(list(invoice["lines"]["data"]), params, f"/v1/invoices/{invoice_id}/lines")

    @locked
    def list_invoice_payments(self, params: Params) -> StripeObj:
        payments = self._filter_eq(self._all("invoice_payment"), params, {"invoice": lambda p: p["invoice"]})
        return self._paginate(payments, params, "/v1/invoice_payments")

    @mutation
    def fail_subscription_invoice(self, params: Params) -> StripeObj:
        """Control: the subscription's next invoice fails → ``invoice.payment_failed``, ``past_due``."""
        mark = len(self.events)
        sub = self._get("subscription", req_str(params, "subscription"), param="subscription", status=400)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise FakeStripeError(f"Subscription {sub['id']} is {sub['status']}.", param="subscription")
        before = copy.deepcopy(sub)
        start, end = sub["current_period_start"], sub["current_period_end"]
        lines = [self._item_line(sub, item, start, end, trial=False) for item in sub["items"]["data"]]
        invoice = self._draft_invoice(
            sub["customer"],
            sub["currency"],
            lines,
            billing_reason="subscription_cycle",
            subscription=sub,
            period_start=start,
            period_end=end,
        )
        self._issue_invoice(invoice, pay=False)
        sub["latest_invoice"] = invoice["id"]
        sub["status"] = "past_due"
        self._emit_updated("customer.subscription.updated", sub, before)
        return {"object": copy.deepcopy(invoice), "events": self._events_since(mark)}

    @mutation
    def pay_open_invoice(self, invoice_id: str) -> StripeObj:
        """Control: pay an open invoice (e.g. after ``fail``); a past-due subscription becomes active."""
        mark = len(self.events)
        invoice = self._get("invoice", invoice_id)
        if invoice["status"] != "open":
            raise FakeStripeError(f"Invoice is already {invoice['status']}; only open invoices can be paid.")
        self._pay_invoice(invoice)
        sub_id = ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        sub = self.objects.get(sub_id) if sub_id else None
        if sub is not None and sub["status"] in ("past_due", "unpaid") and sub["latest_invoice"] == invoice_id:
            before = copy.deepcopy(sub)
            sub["status"] = "active"
            self._emit_updated("customer.subscription.updated", sub, before)
        return {"object": copy.deepcopy(invoice), "events": self._events_since(mark)}
