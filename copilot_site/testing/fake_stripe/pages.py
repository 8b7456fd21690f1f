"""The HTML pages hosted Checkout and the billing portal URLs point at, so a browser test can land on them."""

from __future__ import annotations

import html
from typing import Any

from copilot_site.testing.fake_stripe.errors import FakeStripeError
from copilot_site.testing.fake_stripe.params import StripeObj
from copilot_site.testing.fake_stripe.responses import HttpResponse, html_response, redirect
from copilot_site.testing.fake_stripe.state import FakeStripeState


def page_response(state: FakeStripeState, method: str, path: str, params: dict[str, Any]) -> HttpResponse:
    """``/checkout/{id}`` (GET the page, POST ``pay``, GET ``cancel``) and ``/billing_portal/{id}``."""
    parts = [part for part in path.split("/") if part]
    if parts[0] == "billing_portal" and len(parts) == 2 and method == "GET":
        return _portal_page(state, parts[1])
    if parts[0] != "checkout" or len(parts) not in (2, 3):
        return html_response(404, "Not found", "<h1>Not found</h1>")
    try:
        session = state.retrieve("checkout.session", parts[1])
    except FakeStripeError as error:
        return html_response(404, "Not found", f"<h1>Not found</h1><p>{html.escape(error.message)}</p>")
    session_id: str = session["id"]
    action = parts[2] if len(parts) == 3 else None
    if action is None and method == "GET":
        return _checkout_page(session)
    if action == "pay" and method == "POST":
        try:
            state.complete_checkout_session(session_id, params)
        except FakeStripeError as error:
            return html_response(400, "Checkout error", f"<h1>Error</h1><p>{html.escape(error.message)}</p>")
        success_url = session.get("success_url")
        if success_url:
            return redirect(str(success_url).replace("{CHECKOUT_SESSION_ID}", session_id))
        return html_response(200, "Payment complete", "<h1 id='complete'>Payment complete</h1>")
    if action == "cancel" and method == "GET":
        cancel_url = session.get("cancel_url")
        if cancel_url:
            return redirect(str(cancel_url).replace("{CHECKOUT_SESSION_ID}", session_id))
        return html_response(200, "Checkout canceled", "<h1 id='canceled'>Checkout canceled</h1>")
    return html_response(405, "Method not allowed", "<h1>Method not allowed</h1>")


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
    return html_response(200, "Fake Stripe Checkout", body)


def _portal_page(state: FakeStripeState, session_id: str) -> HttpResponse:
    try:
        session = state.retrieve("billing_portal.session", session_id)
    except FakeStripeError as error:
        return html_response(404, "Not found", f"<h1>Not found</h1><p>{html.escape(error.message)}</p>")
    return_url = html.escape(str(session.get("return_url") or "/"))
    body = (
        "<h1>Fake Stripe customer portal</h1>\n"
        f"<p>Customer <code id='customer'>{html.escape(str(session['customer']))}</code></p>\n"
        f"<p><a id='return' href='{return_url}'>Return</a></p>"
    )
    return html_response(200, "Fake Stripe customer portal", body)
