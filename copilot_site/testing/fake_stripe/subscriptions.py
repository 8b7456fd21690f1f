"""Subscriptions: start, update, cancel, and the control that advances one to its period end."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from copilot_site.testing.fake_stripe.customers import Customers
from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    apply_metadata,
    as_bool,
    as_int,
    choice,
    list_param,
    opt_int,
    opt_str,
    req_str,
    sub_params,
)
from copilot_site.testing.fake_stripe.store import (
    DAY,
    PRORATION_BEHAVIORS,
    locked,
    mutation,
    new_id,
)
from copilot_site.testing.fake_stripe.subscription_items import SubscriptionItems


class Subscriptions(SubscriptionItems, Customers):
    """Subscription objects and their lifecycle."""

    def _start_subscription(
        self,
        customer_id: str,
        items: list[tuple[StripeObj, int]],
        *,
        metadata: Mapping[str, str],
        trial_days: int | None = None,
        one_time: list[tuple[StripeObj, int]] | None = None,
        description: str | None = None,
        schedule_id: str | None = None,
        sub_id: str | None = None,
    ) -> tuple[StripeObj, StripeObj]:
        """Create an active (or trialing) subscription and pay its first invoice."""
        now = self._now()
        sub_id = sub_id or new_id("sub_")
        currency: str = items[0][0]["currency"]
        trial_end = now + trial_days * DAY if trial_days else None
        period_end = trial_end or now + self._interval_seconds(items[0][0])
        sub_items = [self._new_item(sub_id, price, qty, now, period_end) for price, qty in items]
        sub = self._new_subscription(
            sub_id,
            customer_id,
            currency,
            sub_items,
            now=now,
            period_end=period_end,
            trial_end=trial_end,
            metadata=metadata,
            description=description,
            schedule_id=schedule_id,
        )
        self._store(sub)
        lines = [self._item_line(sub, item, now, period_end, trial=trial_end is not None) for item in sub_items]
        for price, qty in one_time or []:
            lines.append(
                self._line(
                    amount=price["unit_amount"] * qty,
                    price=price,
                    quantity=qty,
                    description=self._product_name(price),
                    period_start=now,
                    period_end=now,
                    subscription_id=None,
                    item_id=None,
                    proration=False,
                )
            )
        invoice = self._draft_invoice(
            customer_id,
            currency,
            lines,
            billing_reason="subscription_create",
            subscription=sub,
            period_start=now,
            period_end=now,
        )
        sub["latest_invoice"] = invoice["id"]
        self._emit("customer.subscription.created", sub)
        self._issue_invoice(invoice, pay=True)
        return sub, invoice

    @staticmethod
    def _new_subscription(
        sub_id: str,
        customer_id: str,
        currency: str,
        sub_items: list[StripeObj],
        *,
        now: int,
        period_end: int,
        trial_end: int | None,
        metadata: Mapping[str, str],
        description: str | None,
        schedule_id: str | None,
    ) -> StripeObj:
        """The subscription object (not stored yet)."""
        return {
            "id": sub_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": period_end if trial_end else now,
            "billing_cycle_anchor_config": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": currency,
            "current_period_end": period_end,
            "current_period_start": now,
            "customer": customer_id,
            "days_until_due": None,
            "default_payment_method": None,
            "default_source": None,
            "description": description,
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": sub_items,
                "has_more": False,
                "total_count": len(sub_items),
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": dict(metadata),
            "next_pending_invoice_item_invoice": None,
            "pause_collection": None,
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": schedule_id,
            "start_date": now,
            "status": "trialing" if trial_end else "active",
            "test_clock": None,
            "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": now if trial_end else None,
        }

    @mutation
    def create_subscription(self, params: Params) -> StripeObj:
        customer = self._customer(req_str(params, "customer"))
        items = self._items_from_params(params, "items")
        trial_days = opt_int(params, "trial_period_days")
        sub, _invoice = self._start_subscription(
            customer["id"],
            items,
            metadata=apply_metadata({}, params.get("metadata")),
            trial_days=trial_days,
            description=opt_str(params, "description"),
        )
        if "cancel_at_period_end" in params and as_bool(params["cancel_at_period_end"], "cancel_at_period_end"):
            before = copy.deepcopy(sub)
            self._set_cancel_at_period_end(sub, True)
            self._emit_updated("customer.subscription.updated", sub, before)
        return copy.deepcopy(sub)

    @locked
    def list_subscriptions(self, params: Params) -> StripeObj:
        subs = self._all("subscription")
        status = opt_str(params, "status")
        if status is None:
            subs = [s for s in subs if s["status"] not in ("canceled", "incomplete_expired")]
        elif status == "ended":
            subs = [s for s in subs if s["status"] in ("canceled", "incomplete_expired")]
        elif status != "all":
            subs = [s for s in subs if s["status"] == status]
        subs = self._filter_eq(subs, params, {"customer": lambda s: s["customer"]})
        price_id = opt_str(params, "price")
        if price_id is not None:
            subs = [s for s in subs if any(i["price"]["id"] == price_id for i in s["items"]["data"])]
        return self._paginate(subs, params, "/v1/subscriptions")

    def _set_cancel_at_period_end(self, sub: StripeObj, flag: bool) -> None:
        sub["cancel_at_period_end"] = flag
        sub["cancel_at"] = sub["current_period_end"] if flag else None
        sub["canceled_at"] = self._now() if flag else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None

    def _set_cancel_at(self, sub: StripeObj, raw: Any) -> None:
        if sub["schedule"]:
            raise FakeStripeError(
                f"The subscription is managed by the subscription schedule `{sub['schedule']}`, and updating any "
                "cancelation behavior directly is not allowed. Please update the schedule instead.",
                param="cancel_at",
            )
        if raw is None or raw == "":
            sub["cancel_at"] = None
            if not sub["cancel_at_period_end"]:
                sub["canceled_at"] = None
                sub["cancellation_details"]["reason"] = None
            return
        if raw in ("max_period_end", "min_period_end"):
            cancel_at: int = sub["current_period_end"]
        else:
            cancel_at = as_int(raw, "cancel_at")
            if cancel_at <= self._now():
                raise FakeStripeError("cancel_at must be in the future.", param="cancel_at")
        sub["cancel_at"] = cancel_at
        sub["canceled_at"] = self._now()
        sub["cancellation_details"]["reason"] = "cancellation_requested"

    @mutation
    def update_subscription(self, sub_id: str, params: Params) -> StripeObj:
        sub = self._get("subscription", sub_id)
        now = self._now()
        if sub["status"] in ("canceled", "incomplete_expired") and (
            set(params) - {"metadata", "cancellation_details", "expand"}
        ):
            raise FakeStripeError("A canceled subscription can only update its cancellation_details and metadata.")
        before = copy.deepcopy(sub)
        behavior = choice(params, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations")

        if "cancel_at_period_end" in params:
            if sub["schedule"]:
                raise FakeStripeError(
                    f"The subscription is managed by the subscription schedule `{sub['schedule']}`, and updating any "
                    "cancelation behavior directly is not allowed. Please update the schedule instead.",
                    param="cancel_at_period_end",
                )
            self._set_cancel_at_period_end(sub, as_bool(params["cancel_at_period_end"], "cancel_at_period_end"))
        if "cancel_at" in params:
            self._set_cancel_at(sub, params["cancel_at"])
        if "metadata" in params:
            sub["metadata"] = apply_metadata(sub["metadata"], params["metadata"])
        for key in ("description", "default_payment_method"):
            if key in params:
                sub[key] = opt_str(params, key)
        details = sub_params(params, "cancellation_details")
        for key in ("comment", "feedback"):
            if key in details:
                sub["cancellation_details"][key] = opt_str(details, key, f"cancellation_details[{key}]")

        changes = self._apply_item_params(sub, list_param(params, "items"))
        prorate_from = opt_int(params, "proration_date") or now
        anchor = opt_str(params, "billing_cycle_anchor")
        if anchor not in (None, "now", "unchanged"):
            raise FakeStripeError(
                "Invalid billing_cycle_anchor: must be `now` or `unchanged`", param="billing_cycle_anchor"
            )

        invoice: StripeObj | None = None
        if anchor == "now":
            lines = self._pending_prorations.pop(sub["id"], [])
            if behavior != "none":
                lines += self._proration_lines(sub, changes, prorate_from)
            end = now + self._interval_seconds(sub["items"]["data"][0]["price"])
            self._set_period(sub, now, end)
            sub["billing_cycle_anchor"] = now
            if sub["status"] == "trialing":
                sub["status"], sub["trial_end"] = "active", now
            lines += [self._item_line(sub, item, now, end, trial=False) for item in sub["items"]["data"]]
            invoice = self._draft_invoice(
                sub["customer"],
                sub["currency"],
                lines,
                billing_reason="subscription_update",
                subscription=sub,
                period_start=now,
                period_end=now,
            )
            sub["latest_invoice"] = invoice["id"]
        else:
            invoice = self._handle_prorations(sub, changes, behavior, prorate_from)
        self._emit_updated("customer.subscription.updated", sub, before)
        if invoice is not None:
            self._issue_invoice(invoice, pay=True)
        return copy.deepcopy(sub)

    def _customer_deleting(self, customer_id: str) -> None:
        """A deleted customer's live subscriptions end now."""
        super()._customer_deleting(customer_id)
        for sub in self._all("subscription"):
            if sub["customer"] == customer_id and sub["status"] not in ("canceled", "incomplete_expired"):
                self._end_subscription(sub, at=self._now(), reason="cancellation_requested")

    def _end_subscription(self, sub: StripeObj, *, at: int, reason: str) -> None:
        """Cancel now: status canceled, emit ``customer.subscription.deleted``."""
        sub["status"] = "canceled"
        sub["ended_at"] = at
        sub["canceled_at"] = sub["canceled_at"] or at
        sub["cancellation_details"]["reason"] = sub["cancellation_details"]["reason"] or reason
        self._pending_prorations.pop(sub["id"], None)
        self._emit("customer.subscription.deleted", sub)

    @mutation
    def cancel_subscription(self, sub_id: str, params: Params) -> StripeObj:
        sub = self._get("subscription", sub_id)
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise FakeStripeError(
                f"This subscription is already canceled: '{sub_id}'.", code="resource_missing", param="id"
            )
        details = sub_params(params, "cancellation_details")
        for key in ("comment", "feedback"):
            if key in details:
                sub["cancellation_details"][key] = opt_str(details, key, f"cancellation_details[{key}]")
        now = self._now()
        schedule = self.objects.get(sub["schedule"]) if sub["schedule"] else None
        if schedule is not None and schedule["status"] in ("active", "not_started"):
            schedule.update(status="canceled", canceled_at=now, current_phase=None)
            self._emit("subscription_schedule.canceled", schedule)
        sub["canceled_at"] = now
        self._end_subscription(sub, at=now, reason="cancellation_requested")
        return copy.deepcopy(sub)

    @mutation
    def advance_subscription(self, sub_id: str) -> StripeObj:
        """Control: jump to the end of the current period and do what Stripe would do there."""
        mark = len(self.events)
        sub = self._get("subscription", sub_id)
        if sub["status"] not in ("active", "trialing", "past_due", "unpaid"):
            raise FakeStripeError(f"Cannot advance a subscription whose status is `{sub['status']}`.")
        boundary: int = sub["current_period_end"]
        before = copy.deepcopy(sub)

        cancel_at: int | None = sub["cancel_at"]
        if (sub["cancel_at_period_end"] or (cancel_at is not None and cancel_at <= boundary)) and not sub["schedule"]:
            self._end_subscription(sub, at=min(cancel_at or boundary, boundary), reason="cancellation_requested")
            return {"object": copy.deepcopy(sub), "events": self._events_since(mark)}

        schedule = self.objects.get(sub["schedule"]) if sub["schedule"] else None
        if schedule is not None and schedule["status"] == "active":
            phase = next((ph for ph in schedule["phases"] if ph["end_date"] > boundary), None)
            if phase is None:
                if schedule["end_behavior"] == "cancel":
                    schedule.update(status="completed", completed_at=boundary, current_phase=None)
                    self._emit("subscription_schedule.completed", schedule)
                    self._end_subscription(sub, at=boundary, reason="cancellation_requested")
                    return {"object": copy.deepcopy(sub), "events": self._events_since(mark)}
                schedule.update(
                    status="released",
                    released_at=boundary,
                    released_subscription=sub["id"],
                    subscription=None,
                    current_phase=None,
                )
                sub["schedule"] = None
                self._emit("subscription_schedule.released", schedule)
            else:
                current = {"end_date": phase["end_date"], "start_date": phase["start_date"]}
                if schedule["current_phase"] != current:
                    schedule_before = copy.deepcopy(schedule)
                    schedule["current_phase"] = current
                    self._reconcile_items(sub, self._phase_items(phase))
                    if phase.get("metadata"):
                        sub["metadata"] = apply_metadata(sub["metadata"], phase["metadata"])
                    self._emit_updated("subscription_schedule.updated", schedule, schedule_before)

        # renewal into the next period
        end = boundary + self._interval_seconds(sub["items"]["data"][0]["price"])
        self._set_period(sub, boundary, end)
        if sub["status"] in ("trialing", "past_due", "unpaid"):
            sub["status"] = "active"
        lines = self._pending_prorations.pop(sub["id"], [])
        lines += [self._item_line(sub, item, boundary, end, trial=False) for item in sub["items"]["data"]]
        invoice = self._draft_invoice(
            sub["customer"],
            sub["currency"],
            lines,
            billing_reason="subscription_cycle",
            subscription=sub,
            period_start=before["current_period_start"],
            period_end=boundary,
        )
        sub["latest_invoice"] = invoice["id"]
        self._emit_updated("customer.subscription.updated", sub, before)
        self._issue_invoice(invoice, pay=True)
        return {"object": copy.deepcopy(sub), "events": self._events_since(mark)}
