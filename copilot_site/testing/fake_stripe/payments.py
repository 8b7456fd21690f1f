"""Payment intents, charges, refunds and disputes."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    apply_metadata,
    diff,
    money,
    opt_int,
    opt_str,
)
from copilot_site.testing.fake_stripe.store import (
    DAY,
    FakeStripeStore,
    locked,
    mutation,
    new_id,
)


class Payments(FakeStripeStore):
    """Money movement: a paid intent with its charge, refunds of a charge, disputes on it."""

    def _collect_payment(
        self,
        amount: int,
        currency: str,
        customer: str | None,
        *,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[StripeObj, StripeObj]:
        now = self._now()
        pi_id, ch_id, pm_id = new_id("pi_"), new_id("ch_"), new_id("pm_")
        intent: StripeObj = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{pi_id}_secret_{new_id('', 25)}",
            "confirmation_method": "automatic",
            "created": now,
            "currency": currency,
            "customer": customer,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(metadata or {}),
            "payment_method": None,
            "payment_method_types": ["card"],
            "receipt_email": None,
            "status": "requires_payment_method",
        }
        self._store(intent)
        self._emit("payment_intent.created", intent)
        charge = self._new_charge(
            ch_id, pi_id, pm_id, amount, currency, customer, now=now, description=description, metadata=metadata
        )
        self._store(charge)
        self._emit("charge.succeeded", charge)
        intent.update(amount_received=amount, latest_charge=ch_id, payment_method=pm_id, status="succeeded")
        self._emit("payment_intent.succeeded", intent)
        return intent, charge

    def _new_charge(
        self,
        ch_id: str,
        pi_id: str,
        pm_id: str,
        amount: int,
        currency: str,
        customer: str | None,
        *,
        now: int,
        description: str | None,
        metadata: Mapping[str, str] | None,
    ) -> StripeObj:
        """A succeeded card charge of the whole amount (not stored yet)."""
        return {
            "id": ch_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "application_fee_amount": None,
            "balance_transaction": new_id("txn_"),
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "captured": True,
            "created": now,
            "currency": currency,
            "customer": customer,
            "description": description,
            "disputed": False,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": dict(metadata or {}),
            "outcome": {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            "paid": True,
            "payment_intent": pi_id,
            "payment_method": pm_id,
            "payment_method_details": {
                "card": {
                    "brand": "visa",
                    "country": "US",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "funding": "credit",
                    "last4": "4242",
                },
                "type": "card",
            },
            "receipt_email": None,
            "receipt_url": f"{self.base_url}/receipts/{ch_id}",
            "refunded": False,
            "status": "succeeded",
        }

    @mutation
    def create_refund(self, params: Params) -> StripeObj:
        charge_id = opt_str(params, "charge")
        intent_id = opt_str(params, "payment_intent")
        if charge_id is None and intent_id is None:
            raise FakeStripeError("One of `charge` or `payment_intent` is required.", code="parameter_missing")
        if intent_id is not None:
            intent = self._get("payment_intent", intent_id, param="payment_intent", status=400)
            if not intent["latest_charge"]:
                raise FakeStripeError(
                    "This PaymentIntent does not have a successful charge to refund.", param="payment_intent"
                )
            if charge_id is not None and charge_id != intent["latest_charge"]:
                raise FakeStripeError("The charge does not belong to this PaymentIntent.", param="charge")
            charge_id = intent["latest_charge"]
        assert charge_id is not None
        charge = self._get("charge", charge_id, param="charge", status=400)
        refundable: int = charge["amount"] - charge["amount_refunded"]
        if refundable <= 0:
            raise FakeStripeError(
                f"Charge {charge_id} has already been refunded.", code="charge_already_refunded", param="charge"
            )
        amount = opt_int(params, "amount")
        amount = refundable if amount is None else amount
        if amount <= 0:
            raise FakeStripeError("Invalid positive integer", param="amount")
        if amount > refundable:
            raise FakeStripeError(
                f"Refund amount ({money(amount, charge['currency'])}) is greater than unrefunded amount on charge "
                f"({money(refundable, charge['currency'])})",
                code="amount_too_large",
                param="amount",
            )
        reason = opt_str(params, "reason")
        if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
            raise FakeStripeError("Invalid reason", param="reason")
        refund: StripeObj = {
            "id": new_id("re_"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": new_id("txn_"),
            "charge": charge_id,
            "created": self._now(),
            "currency": charge["currency"],
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "livemode": False,
            "metadata": apply_metadata({}, params.get("metadata")),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self._store(refund)
        before = copy.deepcopy(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge, diff(before, charge))
        return copy.deepcopy(refund)

    @locked
    def list_refunds(self, params: Params) -> StripeObj:
        refunds = self._filter_eq(
            self._all("refund"),
            params,
            {"charge": lambda r: r["charge"], "payment_intent": lambda r: r["payment_intent"]},
        )
        return self._paginate(refunds, params, "/v1/refunds")

    @mutation
    def dispute_charge(self, charge_id: str, params: Params) -> StripeObj:
        """Control: open a dispute on a charge → ``charge.dispute.created``."""
        mark = len(self.events)
        charge = self._get("charge", charge_id)
        amount = opt_int(params, "amount")
        amount = charge["amount"] if amount is None else amount
        now = self._now()
        dispute: StripeObj = {
            "id": new_id("dp_"),
            "object": "dispute",
            "amount": amount,
            "balance_transactions": [],
            "charge": charge_id,
            "created": now,
            "currency": charge["currency"],
            "evidence": {},
            "evidence_details": {
                "due_by": now + 7 * DAY,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": opt_str(params, "reason") or "fraudulent",
            "status": "needs_response",
        }
        self._store(dispute)
        charge["disputed"] = True
        self._emit("charge.dispute.created", dispute)
        return {"object": copy.deepcopy(dispute), "events": self._events_since(mark)}
