"""Subscription items and the prorations changing them produces."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.invoices import Invoices
from copilot_site.testing.fake_stripe.params import (
    Params,
    StripeObj,
    apply_metadata,
    as_bool,
    day,
    list_param,
    missing_param,
    opt_int,
    opt_str,
    req_str,
)
from copilot_site.testing.fake_stripe.store import (
    locked,
    new_id,
)


@dataclass
class ItemChange:
    item_id: str
    old_price: StripeObj | None
    old_quantity: int
    new_price: StripeObj | None
    new_quantity: int


class SubscriptionItems(Invoices):
    """Items of a subscription: their prices checked, changes applied, and the proration lines changes bill."""

    def _new_item(self, sub_id: str, price: StripeObj, quantity: int, start: int, end: int) -> StripeObj:
        return {
            "id": new_id("si_", 14),
            "object": "subscription_item",
            "created": self._now(),
            "current_period_end": end,
            "current_period_start": start,
            "discounts": [],
            "metadata": {},
            "price": copy.deepcopy(price),
            "quantity": quantity,
            "subscription": sub_id,
            "tax_rates": [],
        }

    @staticmethod
    def _set_period(sub: StripeObj, start: int, end: int) -> None:
        sub["current_period_start"] = start
        sub["current_period_end"] = end
        for item in sub["items"]["data"]:
            item["current_period_start"] = start
            item["current_period_end"] = end

    def _recurring_price(self, price_id: str, param: str, currency: str | None = None) -> StripeObj:
        price = self._price(price_id, param)
        if not price.get("recurring"):
            raise FakeStripeError(
                f"The price specified is set to `type=one_time` but this field only accepts prices with "
                f"`type=recurring`: {price_id}",
                param=param,
            )
        if not price["active"]:
            raise FakeStripeError(f"The price specified is inactive: {price_id}", param=param)
        if currency is not None and price["currency"] != currency:
            raise FakeStripeError(
                "Currency and interval fields must match across all prices on this subscription.", param=param
            )
        return price

    def _items_from_params(self, params: Params, key: str) -> list[tuple[StripeObj, int]]:
        raw = list_param(params, key)
        if not raw:
            raise missing_param(key)
        items: list[tuple[StripeObj, int]] = []
        currency: str | None = None
        for i, entry in enumerate(raw):
            if not isinstance(entry, Mapping):
                raise FakeStripeError(f"Invalid object: {key}[{i}]", param=f"{key}[{i}]")
            price = self._recurring_price(req_str(entry, "price", f"{key}[{i}][price]"), f"{key}[{i}][price]", currency)
            currency = price["currency"]
            quantity = opt_int(entry, "quantity", f"{key}[{i}][quantity]")
            items.append((price, 1 if quantity is None else quantity))
        return items

    def _find_item(self, item_id: str, param: str = "id", status: int = 404) -> tuple[StripeObj, StripeObj]:
        for sub in self._all("subscription"):
            for item in sub["items"]["data"]:
                if item["id"] == item_id:
                    return sub, item
        raise FakeStripeError(
            f"No such subscription_item: '{item_id}'", status=status, code="resource_missing", param=param
        )

    @locked
    def retrieve_subscription_item(self, item_id: str) -> StripeObj:
        return copy.deepcopy(self._find_item(item_id)[1])

    @locked
    def list_subscription_items(self, params: Params) -> StripeObj:
        sub = self._get("subscription", req_str(params, "subscription"), param="subscription", status=400)
        return self._paginate(
            list(reversed(sub["items"]["data"])), params, f"/v1/subscription_items?subscription={sub['id']}"
        )

    def _proration_lines(self, sub: StripeObj, changes: list[ItemChange], now: int) -> list[StripeObj]:
        start, end = sub["current_period_start"], sub["current_period_end"]
        fraction = min(max((end - now) / max(end - start, 1), 0.0), 1.0)
        lines: list[StripeObj] = []
        for change in changes:
            if change.old_price is not None and change.old_quantity > 0:
                old = change.old_price
                lines.append(
                    self._line(
                        amount=-round(old["unit_amount"] * change.old_quantity * fraction),
                        price=old,
                        quantity=change.old_quantity,
                        description=(
                            f"Unused time on {change.old_quantity} × {self._product_name(old)} after {day(now)}"
                        ),
                        period_start=now,
                        period_end=end,
                        subscription_id=sub["id"],
                        item_id=change.item_id,
                        proration=True,
                    )
                )
            if change.new_price is not None and change.new_quantity > 0:
                new = change.new_price
                lines.append(
                    self._line(
                        amount=round(new["unit_amount"] * change.new_quantity * fraction),
                        price=new,
                        quantity=change.new_quantity,
                        description=(
                            f"Remaining time on {change.new_quantity} × {self._product_name(new)} after {day(now)}"
                        ),
                        period_start=now,
                        period_end=end,
                        subscription_id=sub["id"],
                        item_id=change.item_id,
                        proration=True,
                    )
                )
        return lines

    def _reconcile_items(self, sub: StripeObj, desired: list[tuple[StripeObj, int]]) -> list[ItemChange]:
        """Make the subscription's items equal ``desired`` (positionally, keeping item ids)."""
        items: list[StripeObj] = sub["items"]["data"]
        start, end = sub["current_period_start"], sub["current_period_end"]
        changes: list[ItemChange] = []
        new_items: list[StripeObj] = []
        for index in range(max(len(items), len(desired))):
            current = items[index] if index < len(items) else None
            wanted = desired[index] if index < len(desired) else None
            if current is not None and wanted is not None:
                price, qty = wanted
                if current["price"]["id"] != price["id"] or current["quantity"] != qty:
                    changes.append(ItemChange(current["id"], current["price"], current["quantity"], price, qty))
                    current["price"], current["quantity"] = copy.deepcopy(price), qty
                new_items.append(current)
            elif current is not None:
                changes.append(ItemChange(current["id"], current["price"], current["quantity"], None, 0))
            elif wanted is not None:
                item = self._new_item(sub["id"], wanted[0], wanted[1], start, end)
                changes.append(ItemChange(item["id"], None, 0, wanted[0], wanted[1]))
                new_items.append(item)
        sub["items"]["data"] = new_items
        sub["items"]["total_count"] = len(new_items)
        return changes

    def _handle_prorations(
        self, sub: StripeObj, changes: list[ItemChange], behavior: str, now: int
    ) -> StripeObj | None:
        """Returns a draft ``always_invoice`` invoice (already set as ``latest_invoice``), if any."""
        if not changes or behavior == "none":
            return None
        lines = self._proration_lines(sub, changes, now)
        if behavior == "create_prorations":
            self._pending_prorations.setdefault(sub["id"], []).extend(lines)
            return None
        lines = self._pending_prorations.pop(sub["id"], []) + lines
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
        return invoice

    def _apply_item_params(self, sub: StripeObj, raw_items: list[Any]) -> list[ItemChange]:
        changes: list[ItemChange] = []
        items: list[StripeObj] = sub["items"]["data"]
        start, end = sub["current_period_start"], sub["current_period_end"]
        for i, entry in enumerate(raw_items):
            p = f"items[{i}]"
            if not isinstance(entry, Mapping):
                raise FakeStripeError(f"Invalid object: {p}", param=p)
            item_id = opt_str(entry, "id", f"{p}[id]")
            price_id = opt_str(entry, "price", f"{p}[price]")
            quantity = opt_int(entry, "quantity", f"{p}[quantity]")
            deleted = "deleted" in entry and as_bool(entry["deleted"], f"{p}[deleted]")
            if item_id is not None:
                item = next((it for it in items if it["id"] == item_id), None)
                if item is None:
                    raise FakeStripeError(
                        f"No such subscription_item: '{item_id}'", code="resource_missing", param=f"{p}[id]"
                    )
                if deleted:
                    items.remove(item)
                    changes.append(ItemChange(item["id"], item["price"], item["quantity"], None, 0))
                    continue
                old_price, old_qty = item["price"], item["quantity"]
                if price_id is not None:
                    item["price"] = copy.deepcopy(self._recurring_price(price_id, f"{p}[price]", sub["currency"]))
                if quantity is not None:
                    item["quantity"] = quantity
                if "metadata" in entry:
                    item["metadata"] = apply_metadata(item["metadata"], entry["metadata"], f"{p}[metadata]")
                if item["price"]["id"] != old_price["id"] or item["quantity"] != old_qty:
                    changes.append(ItemChange(item["id"], old_price, old_qty, item["price"], item["quantity"]))
            else:
                if price_id is None:
                    raise missing_param(f"{p}[price]")
                price = self._recurring_price(price_id, f"{p}[price]", sub["currency"])
                if any(it["price"]["id"] == price_id for it in items):
                    raise FakeStripeError(
                        "Cannot add multiple subscription items with the same price.", param=f"{p}[price]"
                    )
                item = self._new_item(sub["id"], price, 1 if quantity is None else quantity, start, end)
                items.append(item)
                changes.append(ItemChange(item["id"], None, 0, item["price"], item["quantity"]))
        if raw_items and not items:
            raise FakeStripeError("A subscription must have at least one active item.", param="items")
        sub["items"]["total_count"] = len(items)
        return changes

    def _phase_items(self, phase: Mapping[str, Any]) -> list[tuple[StripeObj, int]]:
        return [(self.objects[item["price"]], int(item["quantity"])) for item in phase["items"]]
