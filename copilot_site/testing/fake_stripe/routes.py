"""The route tables: the ``/v1/...`` Stripe API subset and the ``/_fake/...`` test controls."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import StripeObj
from copilot_site.testing.fake_stripe.state import FakeStripeState

Handler = Callable[[FakeStripeState, Mapping[str, str], dict[str, Any]], StripeObj]


class Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _route(method: str, template: str, handler: Handler) -> Route:
    regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
    return Route(method, re.compile(regex), handler)


def _retrieve(kind: str, label: str | None = None) -> Handler:
    return lambda s, m, p: s.retrieve(kind, m["id"], label)


def _list(kind: str, url: str, *filters: str) -> Handler:
    return lambda s, m, p: s.list_objects(kind, p, url, filters)


API_ROUTES: tuple[Route, ...] = (
    # customers
    _route("POST", "/v1/customers", lambda s, m, p: s.create_customer(p)),
    _route("GET", "/v1/customers", lambda s, m, p: s.list_customers(p)),
    _route("GET", "/v1/customers/{id}", _retrieve("customer")),
    _route("POST", "/v1/customers/{id}", lambda s, m, p: s.update_customer(m["id"], p)),
    _route("DELETE", "/v1/customers/{id}", lambda s, m, p: s.delete_customer(m["id"])),
    # products and prices
    _route("POST", "/v1/products", lambda s, m, p: s.create_product(p)),
    _route("GET", "/v1/products", lambda s, m, p: s.list_products(p)),
    _route("GET", "/v1/products/{id}", _retrieve("product")),
    _route("POST", "/v1/products/{id}", lambda s, m, p: s.update_product(m["id"], p)),
    _route("POST", "/v1/prices", lambda s, m, p: s.create_price(p)),
    _route("GET", "/v1/prices", lambda s, m, p: s.list_prices(p)),
    _route("GET", "/v1/prices/{id}", _retrieve("price")),
    _route("POST", "/v1/prices/{id}", lambda s, m, p: s.update_price(m["id"], p)),
    # checkout
    _route("POST", "/v1/checkout/sessions", lambda s, m, p: s.create_checkout_session(p)),
    _route("GET", "/v1/checkout/sessions", lambda s, m, p: s.list_checkout_sessions(p)),
    _route("GET", "/v1/checkout/sessions/{id}", _retrieve("checkout.session")),
    _route("POST", "/v1/checkout/sessions/{id}/expire", lambda s, m, p: s.expire_checkout_session(m["id"])),
    _route("GET", "/v1/checkout/sessions/{id}/line_items", lambda s, m, p: s.list_checkout_line_items(m["id"], p)),
    # subscriptions
    _route("POST", "/v1/subscriptions", lambda s, m, p: s.create_subscription(p)),
    _route("GET", "/v1/subscriptions", lambda s, m, p: s.list_subscriptions(p)),
    _route("GET", "/v1/subscriptions/{id}", _retrieve("subscription")),
    _route("POST", "/v1/subscriptions/{id}", lambda s, m, p: s.update_subscription(m["id"], p)),
    _route("DELETE", "/v1/subscriptions/{id}", lambda s, m, p: s.cancel_subscription(m["id"], p)),
    _route("GET", "/v1/subscription_items", lambda s, m, p: s.list_subscription_items(p)),
    _route("GET", "/v1/subscription_items/{id}", lambda s, m, p: s.retrieve_subscription_item(m["id"])),
    # subscription schedules
    _route("POST", "/v1/subscription_schedules", lambda s, m, p: s.create_subscription_schedule(p)),
    _route("GET", "/v1/subscription_schedules", lambda s, m, p: s.list_subscription_schedules(p)),
    _route("GET", "/v1/subscription_schedules/{id}", _retrieve("subscription_schedule", "subscription schedule")),
    _route("POST", "/v1/subscription_schedules/{id}", lambda s, m, p: s.update_subscription_schedule(m["id"], p)),
    _route(
        "POST",
        "/v1/subscription_schedules/{id}/release",
        lambda s, m, p: s.release_subscription_schedule(m["id"], p),
    ),
    _route(
        "POST",
        "/v1/subscription_schedules/{id}/cancel",
        lambda s, m, p: s.cancel_subscription_schedule(m["id"], p),
    ),
    # invoices and payments
    _route("GET", "/v1/invoices", lambda s, m, p: s.list_invoices(p)),
    _route("GET", "/v1/invoices/{id}", _retrieve("invoice")),
    _route("GET", "/v1/invoices/{id}/lines", lambda s, m, p: s.list_invoice_lines(m["id"], p)),
    _route("GET", "/v1/invoice_payments", lambda s, m, p: s.list_invoice_payments(p)),
    _route("GET", "/v1/invoice_payments/{id}", _retrieve("invoice_payment")),
    _route("GET", "/v1/payment_intents", _list("payment_intent", "/v1/payment_intents", "customer")),
    _route("GET", "/v1/payment_intents/{id}", _retrieve("payment_intent")),
    _route("GET", "/v1/charges", _list("charge", "/v1/charges", "customer", "payment_intent")),
    _route("GET", "/v1/charges/{id}", _retrieve("charge")),
    _route("POST", "/v1/refunds", lambda s, m, p: s.create_refund(p)),
    _route("GET", "/v1/refunds", lambda s, m, p: s.list_refunds(p)),
    _route("GET", "/v1/refunds/{id}", _retrieve("refund")),
    _route("GET", "/v1/disputes", _list("dispute", "/v1/disputes", "charge", "payment_intent")),
    _route("GET", "/v1/disputes/{id}", _retrieve("dispute")),
    # billing portal
    _route("POST", "/v1/billing_portal/sessions", lambda s, m, p: s.create_billing_portal_session(p)),
    # events
    _route("GET", "/v1/events", lambda s, m, p: s.list_events(p)),
    _route("GET", "/v1/events/{id}", _retrieve("event")),
)


def _int_param(params: Mapping[str, Any], key: str, default: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FakeStripeError(f"Invalid integer: {value}", param=key) from None


def _str_param(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    return None if value is None or value == "" else str(value)


def _control_fail_next(state: FakeStripeState, match: Mapping[str, str], params: dict[str, Any]) -> StripeObj:
    path_prefix = _str_param(params, "path_prefix")
    if path_prefix is None:
        raise FakeStripeError("Missing required param: path_prefix.", param="path_prefix")
    rule = state.fail_next(
        path_prefix,
        _int_param(params, "status", 500),
        method=_str_param(params, "method"),
        code=_str_param(params, "code"),
        message=_str_param(params, "message"),
        error_type=_str_param(params, "type"),
        decline_code=_str_param(params, "decline_code"),
        times=_int_param(params, "times", 1),
    )
    return {"failure": rule, "pending_failures": state.pending_failures(), "events": []}


def _control_reset(state: FakeStripeState, match: Mapping[str, str], params: dict[str, Any]) -> StripeObj:
    state.reset()
    return {"ok": True, "events": []}


def _control_seed_price(state: FakeStripeState, match: Mapping[str, str], params: dict[str, Any]) -> StripeObj:
    lookup = _str_param(params, "lookup")
    if lookup is None:
        raise FakeStripeError("Missing required param: lookup.", param="lookup")
    interval = _str_param(params, "interval")
    price_id = state.seed_price(
        lookup,
        _int_param(params, "unit_amount", 0),
        None if interval == "one_time" else (interval or "month"),
        currency=_str_param(params, "currency") or "usd",
        product_name=_str_param(params, "product_name"),
    )
    return {"object": state.retrieve("price", price_id), "events": []}


CONTROL_ROUTES: tuple[Route, ...] = (
    _route("POST", "/_fake/checkout/{id}/complete", lambda s, m, p: s.complete_checkout_session(m["id"], p)),
    _route("POST", "/_fake/subscriptions/{id}/advance", lambda s, m, p: s.advance_subscription(m["id"])),
    _route("POST", "/_fake/invoices/fail", lambda s, m, p: s.fail_subscription_invoice(p)),
    _route("POST", "/_fake/invoices/{id}/pay", lambda s, m, p: s.pay_open_invoice(m["id"])),
    _route("POST", "/_fake/charges/{id}/dispute", lambda s, m, p: s.dispute_charge(m["id"], p)),
    _route("POST", "/_fake/fail_next", _control_fail_next),
    _route("POST", "/_fake/prices/seed", _control_seed_price),
    _route("POST", "/_fake/reset", _control_reset),
    _route("GET", "/_fake/requests", lambda s, m, p: {"requests": s.logged_requests()}),
    _route("GET", "/_fake/events", lambda s, m, p: {"events": s.all_events()}),
    _route("GET", "/_fake/health", lambda s, m, p: {"ok": True}),
)


def route_match(routes: tuple[Route, ...], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    return None
