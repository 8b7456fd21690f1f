"""Server side of the pages the browser tests drive: billing and account pages, static files.

No browser here: Django's test client against the views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from billing.models import CustomerAccount, Tier
from billing.views import TIER_MULTIPLES
from ratelimits.selectors import TIER_MULTIPLIERS

pytestmark = pytest.mark.django_db

VENDOR = Path(__file__).resolve().parents[2] / "static" / "vendor"


@pytest.fixture
def alice_browser(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.mark.parametrize("path", ["/billing/", "/account/"], ids=["_case_billing", "_case_account"])
def test_pages_require_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_billing_page_lists_the_three_plans_with_their_multiples(alice_browser: Client) -> None:
    # when
    response = alice_browser.get("/billing/")
    # then
    assert response.status_code == 200
    assert [(p["tier"], p["multiple"]) for p in response.context["plans"]] == [
        ("FREE", 1),
        ("PRO", 5),
        ("BUSINESS", 20),
    ]
    body = response.content.decode()
    assert 'data-has-subscription="false"' in body
    assert 'data-period-end=""' in body
    assert '<script type="module" src="/static/billing/billing.js">' in body


def test_billing_page_knows_when_a_subscription_period_ends(alice: Any, alice_browser: Client) -> None:
    # given
    CustomerAccount.objects.create(
        user=alice, tier=Tier.PRO, stripe_subscription_id="sub_1", current_period_end="2026-03-03T12:00:00Z"
    )
    # when
    body = alice_browser.get("/billing/").content.decode()
    # then
    assert 'data-has-subscription="true"' in body
    assert 'data-period-end="2026-03-03T12:00:00+00:00"' in body


def test_plan_multiples_match_the_rate_limit_defaults() -> None:
    assert {tier: TIER_MULTIPLIERS[tier] for tier in TIER_MULTIPLES} == TIER_MULTIPLES


def test_account_page_has_keys_the_personal_cap_card_and_password_change(alice_browser: Client) -> None:
    body = alice_browser.get("/account/").content.decode()
    assert 'id="keys-heading"' in body
    assert "data-personal-cap" in body
    assert '<script src="/static/ratelimits/personal_cap.js" defer>' in body
    assert 'href="/account/password/"' in body


def test_static_files_are_served_with_a_javascript_type_and_an_etag(client: Client) -> None:
    # when
    response = client.get("/static/chat/app.js")
    # then: WhiteNoise, from the source folder (the test profile has no collectstatic)
    assert response.status_code == 200
    assert response["Content-Type"] == 'text/javascript; charset="utf-8"'
    # Plain names carry no content hash, so the cache life is short (hashed names are
    # cached for good: tests/core/test_static_collect.py).
    assert response["Cache-Control"] == "max-age=60, public"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.getvalue() == (VENDOR.parent / "chat" / "app.js").read_bytes()
    # and a revalidation is a 304 with no body
    again = client.get("/static/chat/app.js", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304
    assert again.getvalue() == b""


def test_static_css_has_its_type(client: Client) -> None:
    response = client.get("/static/site/site.css")
    assert response.status_code == 200
    assert response["Content-Type"] == 'text/css; charset="utf-8"'


@pytest.mark.parametrize(
    "path",
    ["/static/nope.js", "/static/../manage.py", "/static/chat/../../manage.py", "/static/%2e%2e/manage.py"],
    ids=["_case_missing", "_case_parent", "_case_nested_parent", "_case_encoded_parent"],
)
def test_static_files_outside_the_static_folders_are_404(client: Client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_vendored_libraries_ship_with_their_licences() -> None:
    assert sorted(p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file()) == [
        "dompurify/LICENSE",
        "dompurify/LICENSE-MPL",
        "dompurify/purify.min.js",
        "marked/LICENSE",
        "marked/marked.esm.js",
    ]
