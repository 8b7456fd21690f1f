"""Checkout redirect URL validation: success and cancel URLs must lie on the configured frontend origin."""

from __future__ import annotations

from typing import Any

import pytest

from billing.errors import BillingUnavailable, BillingUnprocessable
from billing.services import redirect_urls_validate
from billing.services.checkout import redirect_url_is_allowed

ORIGIN = "https://app.example.com"


@pytest.mark.parametrize(
    ("_case", "url"),
    [
        ("backslash", "https://app.example.com\\@evil.example.com/"),
        ("control character", "https://app.example.com/billing\n"),
        ("tab", "https://app.example.com/\tbilling"),
        ("other host", "https://evil.example.com/billing"),
        ("subdomain", "https://evil.app.example.com/billing"),
        ("at in netloc", "https://app.example.com@evil.example.com/billing"),
        ("user info", "https://user@app.example.com/billing"),
        ("other scheme", "http://app.example.com/billing"),
        ("javascript", "javascript:alert(1)"),
        ("other port", "https://app.example.com:8443/billing"),
        ("bad port", "https://app.example.com:99999999/"),
        ("relative", "/billing"),
    ],
)
def test_rejected_redirects(_case: str, url: str) -> None:
    assert redirect_url_is_allowed(url, ORIGIN) is False


@pytest.mark.parametrize(
    ("_case", "url"),
    [
        ("same origin", "https://app.example.com/billing"),
        ("other path", "https://app.example.com/somewhere/else?x=1"),
        ("at in query", "https://app.example.com/billing?email=a@example.com"),
        ("at in fragment", "https://app.example.com/billing#a@b"),
        ("host case", "https://APP.example.com/billing"),
    ],
)
def test_accepted_redirects(_case: str, url: str) -> None:
    assert redirect_url_is_allowed(url, ORIGIN) is True


def test_frontend_base_url_wins_over_platform_base_url(settings: Any) -> None:
    settings.FRONTEND_BASE_URL = ORIGIN
    settings.PLATFORM_BASE_URL = "http://127.0.0.1:8000"
    redirect_urls_validate("https://app.example.com/ok")
    with pytest.raises(BillingUnprocessable) as excinfo:
        redirect_urls_validate("http://127.0.0.1:8000/ok")
    assert excinfo.value.detail == "success_url and cancel_url must match the platform frontend origin"
    assert excinfo.value.status == 422


def test_platform_base_url_is_the_fallback(settings: Any) -> None:
    settings.FRONTEND_BASE_URL = ""
    settings.PLATFORM_BASE_URL = "http://127.0.0.1:8000"
    redirect_urls_validate("http://127.0.0.1:8000/billing", "http://127.0.0.1:8000/")


def test_no_configured_origin_is_503(settings: Any) -> None:
    settings.FRONTEND_BASE_URL = ""
    settings.PLATFORM_BASE_URL = ""
    with pytest.raises(BillingUnavailable) as excinfo:
        redirect_urls_validate("https://app.example.com/billing")
    assert excinfo.value.status == 503
    assert excinfo.value.detail == (
        "Payment redirect URLs cannot be validated: FRONTEND_BASE_URL or PLATFORM_BASE_URL must be set on the server."
    )
