"""HTTP layer of the fake Stripe API (stdlib only).

``FakeStripeApp`` turns (method, target, headers, body) into a response with no
sockets involved; ``FakeStripeServer`` serves it with ``ThreadingHTTPServer``.

Three URL spaces:

* ``/v1/...`` — the Stripe API subset, as the official SDK calls it (Bearer auth,
  form-encoded nested params, ``Idempotency-Key``, ``Stripe-Version``, ``expand[]``).
* ``/_fake/...`` — test-control endpoints (no auth), JSON or form bodies.
* ``/checkout/{id}`` and ``/billing_portal/{id}`` — tiny HTML pages that hosted
  Checkout / the portal URLs point at, so a browser test can land on them.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qsl, urlsplit

from billing.fake_stripe.signing import event_payload, sign_payload
from billing.fake_stripe.state import FakeStripeError, FakeStripeState, StoredResponse, StripeObj, new_id

__all__ = ["FakeStripeApp", "FakeStripeServer", "HttpResponse", "WebhookForwarder", "parse_form"]

logger = logging.getLogger(__name__)

_KEY_PART = re.compile(r"\[([^\[\]]*)\]")
_NO_LISTIFY = frozenset({"metadata"})


# ---------------------------------------------------------------------------
# request parsing
# ---------------------------------------------------------------------------


def _split_key(key: str) -> list[str]:
    """``a[b][0][c]`` → ``["a", "b", "0", "c"]``; ``expand[]`` → ``["expand", ""]``."""
    start = key.find("[")
    if start <= 0:
        return [key]
    parts = [key[:start]]
    position = start
    for match in _KEY_PART.finditer(key, start):
        if match.start() != position:
            return [key]
        parts.append(match.group(1))
        position = match.end()
    if position != len(key):
        return [key]
    return parts


def _listify(node: Any, key: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if key not in _NO_LISTIFY and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def parse_form(raw: str) -> dict[str, Any]:
    """Decode Stripe's form encoding into nested dicts and lists (values stay strings).

    ``items[0][price]=p`` → ``{"items": [{"price": "p"}]}``, ``expand[]=a&expand[]=b``
    → ``{"expand": ["a", "b"]}``, ``metadata[user_id]=7`` → ``{"metadata": {"user_id": "7"}}``
    (metadata keys are never turned into list indexes).
    """
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(raw, keep_blank_values=True):
        parts = _split_key(raw_key)
        node = root
        for index, part in enumerate(parts):
            name = part if part != "" else str(len(node))
            if index == len(parts) - 1:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    result = _listify(root, None)
    assert isinstance(result, dict)
    return result


# ---------------------------------------------------------------------------
# responses and routes
# ---------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


def _json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    body = json.dumps(payload, indent=2).encode("utf-8")
    return HttpResponse(status, body, "application/json", list(headers or []))


def _error_response(error: FakeStripeError, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    response = _json_response(error.status, error.body(), headers)
    if error.should_retry is not None:
        response.headers.append(("Stripe-Should-Retry", "true" if error.should_retry else "false"))
    return response


def _html_response(status: int, title: str, body_html: str) -> HttpResponse:
    page = (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body_html}\n</body></html>\n"
    )
    return HttpResponse(status, page.encode("utf-8"), "text/html; charset=utf-8")


def _redirect(location: str) -> HttpResponse:
    return HttpResponse(303, b"", "text/plain", [("Location", location)])


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


def _match(routes: tuple[Route, ...], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    return None


# ---------------------------------------------------------------------------
# the application
# ---------------------------------------------------------------------------

_NO_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer "
    "auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
    "details, or we can help at https://support.stripe.com/."
)


class FakeStripeApp:
    """Request → response, no sockets.  Holds ``state.lock`` for each API request."""

    def __init__(self, state: FakeStripeState, webhooks: WebhookForwarder | None = None) -> None:
        self.state = state
        self.webhooks = webhooks

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        method = method.upper()
        lower_headers = {k.lower(): v for k, v in headers.items()}
        split = urlsplit(target)
        path = split.path
        try:
            params = self._params(split.query, lower_headers, body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error_response(FakeStripeError(f"Invalid request body: {exc}"))
        try:
            if path.startswith("/v1/"):
                return self._api(method, path, params, lower_headers)
            if path.startswith("/_fake/"):
                return self._control(method, path, params)
            if path.startswith(("/checkout/", "/billing_portal/")):
                return self._page(method, path, params)
        except Exception as exc:  # a bug in the fake: answer like Stripe's 500 instead of dropping the socket
            logger.exception("fake stripe failed on %s %s", method, target)
            return _error_response(
                FakeStripeError(f"Fake Stripe internal error: {exc!r}", status=500, error_type="api_error")
            )
        if path == "/":
            return _html_response(200, "Fake Stripe", "<h1>Fake Stripe</h1><p>API under <code>/v1/</code>.</p>")
        return _error_response(FakeStripeError(f"Unrecognized request URL ({method}: {path}).", status=404))

    @staticmethod
    def _params(query: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        params = parse_form(query) if query else {}
        if body:
            if headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
                decoded = json.loads(body.decode("utf-8"))
                if not isinstance(decoded, dict):
                    raise ValueError("a JSON body must be an object")
                params.update(decoded)
            else:
                params.update(parse_form(body.decode("utf-8")))
        return params

    @staticmethod
    def _api_key(headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization", "").strip()
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip() or None
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip()).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[0] or None
        return None

    def _api(self, method: str, path: str, params: dict[str, Any], headers: Mapping[str, str]) -> HttpResponse:
        state = self.state
        request_id = new_id("req_", 14)
        idempotency_key = headers.get("idempotency-key") or None
        stripe_version = headers.get("stripe-version") or None
        response_headers = [("Request-Id", request_id), ("Stripe-Version", stripe_version or state.api_version)]
        if idempotency_key is not None:
            response_headers.append(("Idempotency-Key", idempotency_key))
        with state.lock:
            state.record_request(method, path, params, idempotency_key, stripe_version)
            api_key = self._api_key(headers)
            if api_key is None:
                return _error_response(FakeStripeError(_NO_KEY_MESSAGE, status=401), response_headers)
            if not api_key.startswith(("sk_test_", "rk_test_")):
                masked = api_key[:8] + "*" * max(len(api_key) - 12, 0) + api_key[-4:]
                return _error_response(
                    FakeStripeError(
                        f"Invalid API Key provided: {masked} (the fake Stripe server only accepts test keys)",
                        status=401,
                        code="api_key_invalid",
                    ),
                    response_headers,
                )
            failure = state.take_failure(method, path)
            if failure is not None:
                return _error_response(failure, response_headers)
            remember = idempotency_key is not None and method == "POST"
            if remember:
                assert idempotency_key is not None
                stored = state.idempotent_response(idempotency_key)
                if stored is not None:
                    if (stored.method, stored.path, stored.params) != (method, path, params):
                        return _error_response(
                            FakeStripeError(
                                "Keys for idempotent requests can only be used with the same parameters they were "
                                f"first used with. Try using a key other than '{idempotency_key}' if you meant to "
                                "execute a different request.",
                                error_type="idempotency_error",
                            ),
                            response_headers,
                        )
                    return HttpResponse(
                        stored.status,
                        stored.body,
                        "application/json",
                        [*stored.headers, ("Idempotent-Replayed", "true")],
                    )
            found = _match(API_ROUTES, method, path)
            if found is None:
                return _error_response(
                    FakeStripeError(
                        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can "
                        "help at https://support.stripe.com/.",
                        status=404,
                    ),
                    response_headers,
                )
            route, groups = found
            try:
                with state.request_context(request_id, idempotency_key):
                    result = route.handler(state, groups, params)
                expand = params.get("expand")
                if isinstance(expand, list) and expand:
                    result = state.expand(result, [str(path_) for path_ in expand])
                response = _json_response(200, result, response_headers)
            except FakeStripeError as error:
                response = _error_response(error, response_headers)
            if remember and response.status < 500:
                assert idempotency_key is not None
                state.store_idempotent_response(
                    idempotency_key,
                    StoredResponse(method, path, params, response.status, response.body, tuple(response.headers)),
                )
            return response

    def _control(self, method: str, path: str, params: dict[str, Any]) -> HttpResponse:
        if method == "GET" and path == "/_fake/webhooks":
            deliveries = self.webhooks.deliveries() if self.webhooks is not None else []
            return _json_response(200, {"deliveries": deliveries})
        found = _match(CONTROL_ROUTES, method, path)
        if found is None:
            return _error_response(FakeStripeError(f"Unknown fake control endpoint ({method}: {path}).", status=404))
        route, groups = found
        try:
            result = route.handler(self.state, groups, params)
        except FakeStripeError as error:
            return _error_response(error)
        if "object" in result and "event_types" not in result and "events" in result:
            result["event_types"] = [event["type"] for event in result["events"]]
        return _json_response(200, result)

    def _page(self, method: str, path: str, params: dict[str, Any]) -> HttpResponse:
        parts = [part for part in path.split("/") if part]
        if parts[0] == "billing_portal" and len(parts) == 2 and method == "GET":
            return self._portal_page(parts[1])
        if parts[0] != "checkout" or len(parts) not in (2, 3):
            return _html_response(404, "Not found", "<h1>Not found</h1>")
        try:
            session = self.state.retrieve("checkout.session", parts[1])
        except FakeStripeError as error:
            return _html_response(404, "Not found", f"<h1>Not found</h1><p>{html.escape(error.message)}</p>")
        session_id: str = session["id"]
        action = parts[2] if len(parts) == 3 else None
        if action is None and method == "GET":
            return self._checkout_page(session)
        if action == "pay" and method == "POST":
            try:
                self.state.complete_checkout_session(session_id, params)
            except FakeStripeError as error:
                return _html_response(400, "Checkout error", f"<h1>Error</h1><p>{html.escape(error.message)}</p>")
            success_url = session.get("success_url")
            if success_url:
                return _redirect(str(success_url).replace("{CHECKOUT_SESSION_ID}", session_id))
            return _html_response(200, "Payment complete", "<h1 id='complete'>Payment complete</h1>")
        if action == "cancel" and method == "GET":
            cancel_url = session.get("cancel_url")
            if cancel_url:
                return _redirect(str(cancel_url).replace("{CHECKOUT_SESSION_ID}", session_id))
            return _html_response(200, "Checkout canceled", "<h1 id='canceled'>Checkout canceled</h1>")
        return _html_response(405, "Method not allowed", "<h1>Method not allowed</h1>")

    @staticmethod
    def _checkout_page(session: StripeObj) -> HttpResponse:
        esc = html.escape
        session_id = esc(str(session["id"]))
        amount = session.get("amount_total") or 0
        currency = str(session.get("currency") or "usd").upper()
        email = esc(str(session.get("customer_email") or ""))
        body = (
            "<h1>Fake Stripe Checkout</h1>\n"
            f"<p>Session <code id='session-id'>{session_id}</code></p>\n"
            f"<p>Mode: <span id='mode'>{esc(str(session['mode']))}</span></p>\n"
            f"<p>Total: <span id='amount-total'>{amount / 100:.2f} {esc(currency)}</span></p>\n"
            f"<p>Status: <span id='status'>{esc(str(session['status']))}</span></p>\n"
            f"<form method='post' action='/checkout/{session_id}/pay'>\n"
            f"<label>Email <input id='email' name='email' type='email' value='{email}'></label>\n"
            "<label>Name <input id='name' name='name' type='text'></label>\n"
            "<button id='pay' type='submit'>Pay</button>\n</form>\n"
            f"<p><a id='cancel' href='/checkout/{session_id}/cancel'>Cancel</a></p>"
        )
        return _html_response(200, "Fake Stripe Checkout", body)

    def _portal_page(self, session_id: str) -> HttpResponse:
        try:
            session = self.state.retrieve("billing_portal.session", session_id)
        except FakeStripeError as error:
            return _html_response(404, "Not found", f"<h1>Not found</h1><p>{html.escape(error.message)}</p>")
        return_url = html.escape(str(session.get("return_url") or "/"))
        body = (
            "<h1>Fake Stripe customer portal</h1>\n"
            f"<p>Customer <code id='customer'>{html.escape(str(session['customer']))}</code></p>\n"
            f"<p><a id='return' href='{return_url}'>Return</a></p>"
        )
        return _html_response(200, "Fake Stripe customer portal", body)


# ---------------------------------------------------------------------------
# webhook delivery (optional, for local development)
# ---------------------------------------------------------------------------


class WebhookForwarder:
    """POSTs every event, signed, to one endpoint from a background thread, in order."""

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._queue: queue.Queue[StripeObj | None] = queue.Queue()
        self._deliveries: list[StripeObj] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self, event: StripeObj) -> None:
        self._queue.put(event)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fake-stripe-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=self.timeout + 1)
            self._thread = None

    def deliveries(self) -> list[StripeObj]:
        with self._lock:
            return [dict(d) for d in self._deliveries]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued event was attempted; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                self._deliver(event)
            finally:
                self._queue.task_done()

    def _deliver(self, event: StripeObj) -> None:
        payload = event_payload(event)
        request = urllib.request.Request(  # noqa: S310 - the URL scheme is checked in __init__
            self.url,
            data=payload.encode("utf-8"),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign_payload(payload, self.secret),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        record: StripeObj = {"event": event["id"], "type": event["type"], "status": None, "error": None}
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                record["status"] = reply.status
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
        except OSError as exc:
            record["error"] = str(exc)
        with self._lock:
            self._deliveries.append(record)


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: FakeStripeApp, verbose: bool) -> None:
        self.app = app
        self.verbose = verbose
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "FakeStripe/1.0"

    def _dispatch(self) -> None:
        server = cast(_FakeHTTPServer, self.server)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        response = server.app.handle(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = _dispatch
    do_POST = _dispatch
    do_DELETE = _dispatch
    do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if cast(_FakeHTTPServer, self.server).verbose:
            super().log_message(format, *args)


class FakeStripeServer:
    """The fake Stripe API on a loopback port.

    >>> with FakeStripeServer() as server:            # doctest: +SKIP
    ...     client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.base_url})
    ...     pro = server.state.seed_price("pro", 2000)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_url: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        api_version: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.state = FakeStripeState(api_version=api_version)
        self.webhooks: WebhookForwarder | None = None
        if webhook_url:
            if not webhook_secret:
                raise ValueError("webhook_secret is required with webhook_url")
            self.webhooks = WebhookForwarder(webhook_url, webhook_secret)
            self.state.event_listeners.append(self.webhooks)
        self.app = FakeStripeApp(self.state, self.webhooks)
        self._httpd = _FakeHTTPServer((host, port), self.app, verbose)
        self.host = host
        self.port: int = self._httpd.server_port
        shown_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - display only
        self.base_url = f"http://{shown_host}:{self.port}"
        self.state.base_url = (public_url or self.base_url).rstrip("/")
        self._thread: threading.Thread | None = None

    @property
    def public_url(self) -> str:
        """Base of the checkout / portal URLs handed to browsers."""
        return self.state.base_url

    def start(self) -> FakeStripeServer:
        """Serve from a daemon thread; returns self."""
        if self._thread is None:
            if self.webhooks is not None:
                self.webhooks.start()
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-stripe", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (used by ``manage.py fake_stripe``)."""
        if self.webhooks is not None:
            self.webhooks.start()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._httpd.server_close()
            if self.webhooks is not None:
                self.webhooks.stop()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        if self.webhooks is not None:
            self.webhooks.stop()

    def reset(self) -> None:
        self.state.reset()

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
