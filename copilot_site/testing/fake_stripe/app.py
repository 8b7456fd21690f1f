"""Request to response for the fake Stripe API, no sockets involved.

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
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.forms import parse_form
from copilot_site.testing.fake_stripe.pages import page_response
from copilot_site.testing.fake_stripe.responses import HttpResponse, error_response, html_response, json_response
from copilot_site.testing.fake_stripe.routes import API_ROUTES, CONTROL_ROUTES, route_match
from copilot_site.testing.fake_stripe.state import FakeStripeState
from copilot_site.testing.fake_stripe.store import StoredResponse, new_id
from copilot_site.testing.fake_stripe.webhooks import WebhookForwarder

logger = logging.getLogger(__name__)

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
            return error_response(FakeStripeError(f"Invalid request body: {exc}"))
        try:
            if path.startswith("/v1/"):
                return self._api(method, path, params, lower_headers)
            if path.startswith("/_fake/"):
                return self._control(method, path, params)
            if path.startswith(("/checkout/", "/billing_portal/")):
                return page_response(self.state, method, path, params)
        except Exception as exc:  # a bug in the fake: answer like Stripe's 500 instead of dropping the socket
            logger.exception("fake stripe failed on %s %s", method, target)
            return error_response(
                FakeStripeError(f"Fake Stripe internal error: {exc!r}", status=500, error_type="api_error")
            )
        if path == "/":
            return html_response(200, "Fake Stripe", "<h1>Fake Stripe</h1><p>API under <code>/v1/</code>.</p>")
        return error_response(FakeStripeError(f"Unrecognized request URL ({method}: {path}).", status=404))

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
                return error_response(FakeStripeError(_NO_KEY_MESSAGE, status=401), response_headers)
            if not api_key.startswith(("sk_test_", "rk_test_")):
                masked = api_key[:8] + "*" * max(len(api_key) - 12, 0) + api_key[-4:]
                return error_response(
                    FakeStripeError(
                        f"Invalid API Key provided: {masked} (the fake Stripe server only accepts test keys)",
                        status=401,
                        code="api_key_invalid",
                    ),
                    response_headers,
                )
            failure = state.take_failure(method, path)
            if failure is not None:
                return error_response(failure, response_headers)
            remember = idempotency_key is not None and method == "POST"
            if remember:
                assert idempotency_key is not None
                stored = state.idempotent_response(idempotency_key)
                if stored is not None:
                    if (stored.method, stored.path, stored.params) != (method, path, params):
                        return error_response(
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
            found = route_match(API_ROUTES, method, path)
            if found is None:
                return error_response(
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
                response = json_response(200, result, response_headers)
            except FakeStripeError as error:
                response = error_response(error, response_headers)
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
            return json_response(200, {"deliveries": deliveries})
        found = route_match(CONTROL_ROUTES, method, path)
        if found is None:
            return error_response(FakeStripeError(f"Unknown fake control endpoint ({method}: {path}).", status=404))
        route, groups = found
        try:
            result = route.handler(self.state, groups, params)
        except FakeStripeError as error:
            return error_response(error)
        if "object" in result and "event_types" not in result and "events" in result:
            result["event_types"] = [event["type"] for event in result["events"]]
        return json_response(200, result)
