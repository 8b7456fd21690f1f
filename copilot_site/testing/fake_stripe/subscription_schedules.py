"""Subscription schedules: phases, create (also from a subscription), update, release, cancel."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    apply_metadata,
    as_int,
    choice,
    list_param,
    missing_param,
    opt_int,
    opt_str,
    req_str,
    sub_params,
)
from copilot_site.testing.fake_stripe.store import (
    PERIOD_SECONDS,
    PRORATION_BEHAVIORS,
    locked,
    mutation,
    new_id,
)
from copilot_site.testing.fake_stripe.subscriptions import Subscriptions


class SubscriptionSchedules(Subscriptions):
    """Subscription schedule objects."""

    def _build_phases(self, raw_phases: list[Any], *, first_start: int, now: int) -> list[StripeObj]:
        phases: list[StripeObj] = []
        previous_end: int | None = None
        currency: str | None = None
        for i, raw in enumerate(raw_phases):
            p = f"phases[{i}]"
            if not isinstance(raw, Mapping):
                raise FakeStripeError(f"Invalid object: {p}", param=p)
            items, prices, currency = self._phase_items_from_params(raw, p, currency)
            start = self._phase_start(raw, i, first_start=first_start, previous_end=previous_end, now=now)
            if "iterations" in raw:
                raise FakeStripeError(
                    f"Received unknown parameter: {p}[iterations]. API version {self.api_version} replaced it with "
                    f"{p}[duration][interval] and {p}[duration][interval_count].",
                    param=f"{p}[iterations]",
                )
            end = self._phase_end(raw, p, start, prices[0], now=now)
            phases.append(
                {
                    "add_invoice_items": [],
                    "application_fee_percent": None,
                    "billing_cycle_anchor": None,
                    "collection_method": None,
                    "currency": currency,
                    "default_payment_method": None,
                    "default_tax_rates": [],
                    "description": opt_str(raw, "description", f"{p}[description]"),
                    "discounts": [],
                    "end_date": end,
                    "invoice_settings": None,
                    "items": items,
                    "metadata": apply_metadata({}, raw.get("metadata"), f"{p}[metadata]"),
                    "on_behalf_of": None,
                    "proration_behavior": choice(raw, "proration_behavior", PRORATION_BEHAVIORS, "create_prorations"),
                    "start_date": start,
                    "transfer_data": None,
                    "trial_end": None,
                }
            )
            previous_end = end
        return phases

    def _phase_items_from_params(
        self, raw: Mapping[str, Any], p: str, currency: str | None
    ) -> tuple[list[StripeObj], list[StripeObj], str | None]:
        """A phase's ``items`` (each a recurring price of one currency): the items, their prices, the currency."""
        raw_items = list_param(raw, "items", f"{p}[items]")
        if not raw_items:
            raise missing_param(f"{p}[items]")
        items: list[StripeObj] = []
        prices: list[StripeObj] = []
        for j, raw_item in enumerate(raw_items):
            q = f"{p}[items][{j}]"
            if not isinstance(raw_item, Mapping):
                raise FakeStripeError(f"Invalid object: {q}", param=q)
            price_id = opt_str(raw_item, "price", f"{q}[price]") or opt_str(raw_item, "plan", f"{q}[plan]")
            if price_id is None:
                raise missing_param(f"{q}[price]")
            price = self._recurring_price(price_id, f"{q}[price]", currency)
            currency = price["currency"]
            prices.append(price)
            quantity = opt_int(raw_item, "quantity", f"{q}[quantity]")
            items.append(
                {
                    "discounts": [],
                    "metadata": apply_metadata({}, raw_item.get("metadata"), f"{q}[metadata]"),
                    "price": price_id,
                    "quantity": 1 if quantity is None else quantity,
                    "tax_rates": [],
                }
            )
        return items, prices, currency

    @staticmethod
    def _phase_start(raw: Mapping[str, Any], i: int, *, first_start: int, previous_end: int | None, now: int) -> int:
        """The first phase starts when asked (default ``first_start``); each later one where the previous ended."""
        p = f"phases[{i}]"
        raw_start = raw.get("start_date")
        if i == 0:
            if raw_start is None or raw_start == "":
                start = first_start
            elif raw_start == "now":
                start = now
            else:
                start = as_int(raw_start, f"{p}[start_date]")
        else:
            assert previous_end is not None
            if raw_start is None or raw_start == "":
                start = previous_end
            else:
                start = now if raw_start == "now" else as_int(raw_start, f"{p}[start_date]")
                if start != previous_end:
                    raise FakeStripeError(
                        f"The start_date of phases[{i}] must be equal to the end_date of phases[{i - 1}].",
                        param=f"{p}[start_date]",
                    )
        return start

    def _phase_end(self, raw: Mapping[str, Any], p: str, start: int, first_price: StripeObj, *, now: int) -> int:
        """``end_date`` or ``duration`` (not both); without either, one billing period of the first price."""
        raw_end = raw.get("end_date")
        end = now if raw_end == "now" else opt_int(raw, "end_date", f"{p}[end_date]")
        duration = sub_params(raw, "duration", f"{p}[duration]")
        if end is not None and duration:
            raise FakeStripeError(
                f"You may only specify one of these parameters: {p}[end_date], {p}[duration].",
                param=f"{p}[duration]",
            )
        if duration:
            unit = req_str(duration, "interval", f"{p}[duration][interval]")
            if unit not in PERIOD_SECONDS:
                raise FakeStripeError(
                    f"Invalid {p}[duration][interval]: must be one of day, week, month or year",
                    param=f"{p}[duration][interval]",
                )
            count = opt_int(duration, "interval_count", f"{p}[duration][interval_count]")
            end = start + max(count or 1, 1) * PERIOD_SECONDS[unit]
        if end is None:  # Stripe's default for a phase without an end: one billing period
            end = start + self._interval_seconds(first_price)
        if end <= start:
            raise FakeStripeError(f"{p}[end_date] must be after {p}[start_date].", param=f"{p}[end_date]")
        return end

    def _new_schedule(
        self,
        *,
        customer: str,
        phases: list[StripeObj],
        status: str,
        subscription: str | None,
        end_behavior: str,
        metadata: Mapping[str, str],
    ) -> StripeObj:
        schedule: StripeObj = {
            "id": new_id("sub_sched_"),
            "object": "subscription_schedule",
            "application": None,
            "billing_mode": {"type": "classic"},
            "canceled_at": None,
            "completed_at": None,
            "created": self._now(),
            "current_phase": (
                {"end_date": phases[0]["end_date"], "start_date": phases[0]["start_date"]}
                if status == "active"
                else None
            ),
            "customer": customer,
            "default_settings": {
                "application_fee_percent": None,
                "automatic_tax": {"enabled": False, "liability": None},
                "billing_cycle_anchor": "automatic",
                "collection_method": "charge_automatically",
                "default_payment_method": None,
                "default_source": None,
                "description": None,
                "invoice_settings": {"issuer": {"type": "self"}},
                "on_behalf_of": None,
                "transfer_data": None,
            },
            "end_behavior": end_behavior,
            "livemode": False,
            "metadata": dict(metadata),
            "phases": phases,
            "released_at": None,
            "released_subscription": None,
            "status": status,
            "subscription": subscription,
            "test_clock": None,
        }
        return self._store(schedule)

    def _schedule_from_subscription(
        self, params: Params, sub_id: str, *, end_behavior: str, metadata: Mapping[str, str]
    ) -> StripeObj:
        """``from_subscription``: a one-phase active schedule mirroring the subscription's current period."""
        for forbidden in ("phases", "customer", "start_date"):
            if forbidden in params:
                raise FakeStripeError(f"You cannot set `{forbidden}` if `from_subscription` is set.", param=forbidden)
        sub = self._get("subscription", sub_id, param="from_subscription", status=400)
        if sub["schedule"]:
            raise FakeStripeError(
                f"You cannot migrate a subscription that is already attached to a schedule: `{sub['schedule']}`.",
                param="from_subscription",
            )
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise FakeStripeError(
                f"You cannot migrate a subscription with status `{sub['status']}`.", param="from_subscription"
            )
        phase = self._phase_of_subscription(sub)
        schedule = self._new_schedule(
            customer=sub["customer"],
            phases=[phase],
            status="active",
            subscription=sub["id"],
            end_behavior=end_behavior,
            metadata=metadata,
        )
        before = copy.deepcopy(sub)
        sub["schedule"] = schedule["id"]
        self._emit("subscription_schedule.created", schedule)
        self._emit_updated("customer.subscription.updated", sub, before)
        return copy.deepcopy(schedule)

    @staticmethod
    def _phase_of_subscription(sub: StripeObj) -> StripeObj:
        return {
            "add_invoice_items": [],
            "application_fee_percent": None,
            "billing_cycle_anchor": None,
            "collection_method": None,
            "currency": sub["currency"],
            "default_payment_method": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "end_date": sub["current_period_end"],
            "invoice_settings": None,
            "items": [
                {
                    "discounts": [],
                    "metadata": {},
                    "price": item["price"]["id"],
                    "quantity": item["quantity"],
                    "tax_rates": [],
                }
                for item in sub["items"]["data"]
            ],
            "metadata": {},
            "on_behalf_of": None,
            "proration_behavior": "create_prorations",
            "start_date": sub["current_period_start"],
            "transfer_data": None,
            "trial_end": None,
        }

    @mutation
    def create_subscription_schedule(self, params: Params) -> StripeObj:
        now = self._now()
        end_behavior = choice(params, "end_behavior", ("release", "cancel"), "release")
        metadata = apply_metadata({}, params.get("metadata"))
        from_subscription = opt_str(params, "from_subscription")
        if from_subscription is not None:
            return self._schedule_from_subscription(
                params, from_subscription, end_behavior=end_behavior, metadata=metadata
            )

        customer = self._customer(req_str(params, "customer"))
        raw_start = params.get("start_date")
        start = now if raw_start in (None, "", "now") else as_int(raw_start, "start_date")
        raw_phases = list_param(params, "phases")
        if not raw_phases:
            raise missing_param("phases")
        phases = self._build_phases(raw_phases, first_start=start, now=now)
        if phases[0]["start_date"] > now:
            schedule = self._new_schedule(
                customer=customer["id"],
                phases=phases,
                status="not_started",
                subscription=None,
                end_behavior=end_behavior,
                metadata=metadata,
            )
            self._emit("subscription_schedule.created", schedule)
            return copy.deepcopy(schedule)
        sub_id = new_id("sub_")
        schedule = self._new_schedule(
            customer=customer["id"],
            phases=phases,
            status="active",
            subscription=sub_id,
            end_behavior=end_behavior,
            metadata=metadata,
        )
        self._emit("subscription_schedule.created", schedule)
        self._start_subscription(
            customer["id"],
            self._phase_items(phases[0]),
            metadata=phases[0]["metadata"],
            schedule_id=schedule["id"],
            sub_id=sub_id,
        )
        return copy.deepcopy(schedule)

    def _check_schedule_mutable(self, schedule: StripeObj, action: str) -> None:
        if schedule["status"] not in ("not_started", "active"):
            raise FakeStripeError(
                f"You cannot {action} a subscription schedule that is currently in the `{schedule['status']}` "
                "status. It must be in one of the following statuses: `not_started`, `active`."
            )

    @mutation
    def update_subscription_schedule(self, schedule_id: str, params: Params) -> StripeObj:
        schedule = self._get("subscription_schedule", schedule_id, label="subscription schedule")
        self._check_schedule_mutable(schedule, "update")
        now = self._now()
        before = copy.deepcopy(schedule)
        if "end_behavior" in params:
            schedule["end_behavior"] = choice(params, "end_behavior", ("release", "cancel"), "release")
        if "metadata" in params:
            schedule["metadata"] = apply_metadata(schedule["metadata"], params["metadata"])
        sub = self.objects.get(schedule["subscription"]) if schedule["subscription"] else None
        sub_before = copy.deepcopy(sub) if sub is not None else None
        invoice: StripeObj | None = None
        if "phases" in params:
            raw_phases = list_param(params, "phases")
            if not raw_phases:
                raise missing_param("phases")
            active = schedule["status"] == "active"
            current = schedule["current_phase"]
            first_start = current["start_date"] if active and current else schedule["phases"][0]["start_date"]
            phases = self._build_phases(raw_phases, first_start=first_start, now=now)
            if active and current and phases[0]["start_date"] != current["start_date"]:
                raise FakeStripeError(
                    "You can not modify the start date of the current phase.", param="phases[0][start_date]"
                )
            schedule["phases"] = phases
            if active:
                schedule["current_phase"] = {"end_date": phases[0]["end_date"], "start_date": phases[0]["start_date"]}
            if sub is not None and active:
                changes = self._reconcile_items(sub, self._phase_items(phases[0]))
                behavior = choice(params, "proration_behavior", PRORATION_BEHAVIORS, phases[0]["proration_behavior"])
                invoice = self._handle_prorations(sub, changes, behavior, now)
        self._emit_updated("subscription_schedule.updated", schedule, before)
        if sub is not None and sub_before is not None:
            self._emit_updated("customer.subscription.updated", sub, sub_before)
        if invoice is not None:
            self._issue_invoice(invoice, pay=True)
        return copy.deepcopy(schedule)

    @mutation
    def release_subscription_schedule(self, schedule_id: str, params: Params) -> StripeObj:
        schedule = self._get("subscription_schedule", schedule_id, label="subscription schedule")
        self._check_schedule_mutable(schedule, "release")
        sub_id = schedule["subscription"]
        schedule.update(
            status="released",
            released_at=self._now(),
            released_subscription=sub_id,
            subscription=None,
            current_phase=None,
        )
        self._emit("subscription_schedule.released", schedule)
        sub = self.objects.get(sub_id) if sub_id else None
        if sub is not None:
            before = copy.deepcopy(sub)
            sub["schedule"] = None
            self._emit_updated("customer.subscription.updated", sub, before)
        return copy.deepcopy(schedule)

    @mutation
    def cancel_subscription_schedule(self, schedule_id: str, params: Params) -> StripeObj:
        schedule = self._get("subscription_schedule", schedule_id, label="subscription schedule")
        self._check_schedule_mutable(schedule, "cancel")
        now = self._now()
        schedule.update(status="canceled", canceled_at=now, current_phase=None)
        self._emit("subscription_schedule.canceled", schedule)
        sub = self.objects.get(schedule["subscription"]) if schedule["subscription"] else None
        if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
            sub["canceled_at"] = now
            self._end_subscription(sub, at=now, reason="cancellation_requested")
        return copy.deepcopy(schedule)

    @locked
    def list_subscription_schedules(self, params: Params) -> StripeObj:
        schedules = self._filter_eq(self._all("subscription_schedule"), params, {"customer": lambda s: s["customer"]})
        return self._paginate(schedules, params, "/v1/subscription_schedules")
