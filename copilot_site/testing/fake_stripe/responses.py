"""HTTP responses of the fake: JSON bodies, Stripe-shaped errors, small HTML pages, redirects."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from copilot_site.testing.fake_stripe.errors import FakeStripeError


@dataclass
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    body = json.dumps(payload, indent=2).encode("utf-8")
    return HttpResponse(status, body, "application/json", list(headers or []))


def error_response(error: FakeStripeError, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    response = json_response(error.status, error.body(), headers)
    if error.should_retry is not None:
        response.headers.append(("Stripe-Should-Retry", "true" if error.should_retry else "false"))
    return response


def html_response(status: int, title: str, body_html: str) -> HttpResponse:
    page = (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body_html}\n</body></html>\n"
    )
    return HttpResponse(status, page.encode("utf-8"), "text/html; charset=utf-8")


def redirect(location: str) -> HttpResponse:
    return HttpResponse(303, b"", "text/plain", [("Location", location)])
