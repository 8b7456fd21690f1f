"""Products and prices (the catalogue), including seeding prices by lookup key."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

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
    PERIOD_SECONDS,
    FakeStripeStore,
    locked,
    mutation,
    new_id,
)


class ProductsAndPrices(FakeStripeStore):
    """Product and price objects."""

    def _new_product(
        self,
        *,
        name: str,
        product_id: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        active: bool = True,
        emit: bool = True,
    ) -> StripeObj:
        now = self._now()
        product_id = product_id or new_id("prod_", 14)
        if product_id in self.objects:
            raise FakeStripeError(f"Product already exists: '{product_id}'", code="resource_already_exists", param="id")
        product: StripeObj = {
            "id": product_id,
            "object": "product",
            "active": active,
            "attributes": [],
            "created": now,
            "default_price": None,
            "description": description,
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": dict(metadata or {}),
            "name": name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": now,
            "url": None,
        }
        self._store(product)
        if emit:
            self._emit("product.created", product)
        return product

    @mutation
    def create_product(self, params: Params) -> StripeObj:
        active = as_bool(params["active"], "active") if "active" in params else True
        product = self._new_product(
            name=req_str(params, "name"),
            product_id=opt_str(params, "id"),
            description=opt_str(params, "description"),
            metadata=apply_metadata({}, params.get("metadata")),
            active=active,
        )
        return copy.deepcopy(product)

    @mutation
    def update_product(self, product_id: str, params: Params) -> StripeObj:
        product = self._get("product", product_id)
        before = copy.deepcopy(product)
        for key in ("name", "description"):
            if key in params:
                product[key] = opt_str(params, key)
        if "active" in params:
            product["active"] = as_bool(params["active"], "active")
        if "default_price" in params:
            price_id = opt_str(params, "default_price")
            if price_id is not None:
                self._price(price_id, "default_price")
            product["default_price"] = price_id
        if "metadata" in params:
            product["metadata"] = apply_metadata(product["metadata"], params["metadata"])
        if product != before:
            product["updated"] = self._now()
        self._emit_updated("product.updated", product, before)
        return copy.deepcopy(product)

    @locked
    def list_products(self, params: Params) -> StripeObj:
        products = self._all("product")
        if "active" in params:
            active = as_bool(params["active"], "active")
            products = [p for p in products if p["active"] == active]
        return self._paginate(products, params, "/v1/products")

    def _price(self, price_id: str, param: str) -> StripeObj:
        return self._get("price", price_id, param=param, status=400)

    def _new_price(
        self,
        *,
        product_id: str,
        unit_amount: int,
        currency: str,
        interval: str | None,
        interval_count: int = 1,
        lookup_key: str | None = None,
        transfer_lookup_key: bool = False,
        nickname: str | None = None,
        metadata: Mapping[str, str] | None = None,
        active: bool = True,
        emit: bool = True,
    ) -> StripeObj:
        if unit_amount < 0:
            raise FakeStripeError("Invalid unit_amount: must be at least 0", param="unit_amount")
        if interval is not None and interval not in PERIOD_SECONDS:
            raise FakeStripeError(
                "Invalid recurring[interval]: must be one of day, month, week, or year", param="recurring[interval]"
            )
        if interval_count < 1:
            raise FakeStripeError("Invalid recurring[interval_count]", param="recurring[interval_count]")
        if lookup_key is not None:
            for other in self._all("price"):
                if other["lookup_key"] == lookup_key:
                    if not transfer_lookup_key:
                        raise FakeStripeError(
                            f"A price (`{other['id']}`) already uses that lookup key.", param="lookup_key"
                        )
                    other["lookup_key"] = None
        price: StripeObj = {
            "id": new_id("price_"),
            "object": "price",
            "active": active,
            "billing_scheme": "per_unit",
            "created": self._now(),
            "currency": currency.lower(),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": dict(metadata or {}),
            "nickname": nickname,
            "product": product_id,
            "recurring": (
                {
                    "interval": interval,
                    "interval_count": interval_count,
                    "meter": None,
                    "trial_period_days": None,
                    "usage_type": "licensed",
                }
                if interval is not None
                else None
            ),
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if interval is not None else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        }
        self._store(price)
        if emit:
            self._emit("price.created", price)
        return price

    def _price_from_params(self, params: Params, prefix: str, *, emit: bool, active: bool = True) -> StripeObj:
        """A price from ``price`` create params or from a ``price_data`` hash."""

        def p(name: str) -> str:
            return f"{prefix}[{name}]" if prefix else name

        currency = req_str(params, "currency", p("currency"))
        unit_amount = opt_int(params, "unit_amount", p("unit_amount"))
        if unit_amount is None:
            decimal = opt_str(params, "unit_amount_decimal", p("unit_amount_decimal"))
            if decimal is None:
                raise missing_param(p("unit_amount"))
            try:
                unit_amount = round(float(decimal))
            except ValueError:
                raise FakeStripeError(f"Invalid decimal: {decimal}", param=p("unit_amount_decimal")) from None
        product_id = opt_str(params, "product", p("product"))
        if product_id is not None:
            self._get("product", product_id, param=p("product"), status=400)
        else:
            product_data = sub_params(params, "product_data", p("product_data"))
            if not product_data:
                raise missing_param(p("product"))
            product = self._new_product(
                name=req_str(product_data, "name", p("product_data][name")),
                description=opt_str(product_data, "description"),
                metadata=apply_metadata({}, product_data.get("metadata")),
                emit=emit,
            )
            product_id = product["id"]
        recurring = sub_params(params, "recurring", p("recurring"))
        interval = req_str(recurring, "interval", p("recurring][interval")) if recurring else None
        interval_count = opt_int(recurring, "interval_count", p("recurring][interval_count")) or 1
        return self._new_price(
            product_id=product_id,
            unit_amount=unit_amount,
            currency=currency,
            interval=interval,
            interval_count=interval_count,
            lookup_key=opt_str(params, "lookup_key"),
            transfer_lookup_key=as_bool(params["transfer_lookup_key"], "transfer_lookup_key")
            if "transfer_lookup_key" in params
            else False,
            nickname=opt_str(params, "nickname"),
            metadata=apply_metadata({}, params.get("metadata")),
            active=active,
            emit=emit,
        )

    @mutation
    def create_price(self, params: Params) -> StripeObj:
        active = as_bool(params["active"], "active") if "active" in params else True
        return copy.deepcopy(self._price_from_params(params, "", emit=True, active=active))

    @mutation
    def update_price(self, price_id: str, params: Params) -> StripeObj:
        price = self._get("price", price_id)
        before = copy.deepcopy(price)
        if "active" in params:
            price["active"] = as_bool(params["active"], "active")
        if "nickname" in params:
            price["nickname"] = opt_str(params, "nickname")
        if "lookup_key" in params:
            lookup_key = opt_str(params, "lookup_key")
            transfer = "transfer_lookup_key" in params and as_bool(params["transfer_lookup_key"], "transfer_lookup_key")
            for other in self._all("price"):
                if lookup_key is not None and other is not price and other["lookup_key"] == lookup_key:
                    if not transfer:
                        raise FakeStripeError(
                            f"A price (`{other['id']}`) already uses that lookup key.", param="lookup_key"
                        )
                    other["lookup_key"] = None
            price["lookup_key"] = lookup_key
        if "metadata" in params:
            price["metadata"] = apply_metadata(price["metadata"], params["metadata"])
        self._emit_updated("price.updated", price, before)
        return copy.deepcopy(price)

    @locked
    def list_prices(self, params: Params) -> StripeObj:
        prices = self._all("price")
        if "active" in params:
            active = as_bool(params["active"], "active")
            prices = [p for p in prices if p["active"] == active]
        prices = self._filter_eq(
            prices,
            params,
            {"currency": lambda p: p["currency"], "product": lambda p: p["product"], "type": lambda p: p["type"]},
        )
        lookup_keys = [str(k) for k in list_param(params, "lookup_keys")]
        if lookup_keys:
            prices = [p for p in prices if p["lookup_key"] in lookup_keys]
        recurring = sub_params(params, "recurring")
        interval = opt_str(recurring, "interval", "recurring[interval]")
        if interval is not None:
            prices = [p for p in prices if p["recurring"] and p["recurring"]["interval"] == interval]
        return self._paginate(prices, params, "/v1/prices")

    @mutation
    def seed_price(
        self,
        lookup: str,
        unit_amount: int,
        interval: str | None = "month",
        *,
        currency: str = "usd",
        product_name: str | None = None,
        emit_events: bool = False,
    ) -> str:
        """Create a product and a price with ``lookup_key=lookup``; return the price id.

        ``interval=None`` makes a one-time price.  Seeding is fixture setup, so it
        emits no events unless ``emit_events`` is true.  Re-seeding the same lookup
        key moves the key to the new price (``transfer_lookup_key``).
        """
        product = self._new_product(name=product_name or lookup.replace("_", " ").title(), emit=emit_events)
        price = self._new_price(
            product_id=product["id"],
            unit_amount=unit_amount,
            currency=currency,
            interval=interval,
            lookup_key=lookup,
            transfer_lookup_key=True,
            emit=emit_events,
        )
        product["default_price"] = price["id"]
        price_id: str = price["id"]
        return price_id

    def _product_name(self, price: Mapping[str, Any]) -> str:
        product = self.objects.get(price.get("product", ""))
        name: str = product["name"] if product and product.get("name") else "Product"
        return name

    @staticmethod
    def _interval_seconds(price: Mapping[str, Any]) -> int:
        recurring = price.get("recurring")
        if not recurring:
            return PERIOD_SECONDS["month"]
        seconds: int = PERIOD_SECONDS[recurring["interval"]] * int(recurring.get("interval_count") or 1)
        return seconds
