"""The billing page in Chromium against daphne and the project's fake Stripe.

This module starts its own daphne, configured for payments and pointed at a fake
Stripe server that forwards its webhooks (signed) back to that daphne.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import expect

from billing.models import CustomerAccount, Tier
from copilot_site.core.embedded_redis import free_port
from copilot_site.testing.fake_stripe import FakeStripeServer
from copilot_site.testing.payments_env import payments_env
from copilot_site.testing.processes import start_daphne
from tests.browser.conftest import PHONE, Pages, screenshot, wait_until, worker_settled
from tests.conftest import ARTIFACTS
from tests.factories import UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEBHOOK_SECRET = "whsec_test"


@dataclass
class BillingSite:
    base_url: str
    stripe: FakeStripeServer


@pytest.fixture(scope="module")
def billing_site(live_env: dict[str, str]) -> Iterator[BillingSite]:
    """daphne with payments on, and a fake Stripe that delivers webhooks to it."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    stripe = FakeStripeServer(webhook_url=f"{base_url}/api/billing/stripe/webhook", webhook_secret=WEBHOOK_SECRET)
    stripe.start()
    env = payments_env(live_env, base_url=base_url, stripe=stripe, secret=WEBHOOK_SECRET)
    server, _ = start_daphne(env, ARTIFACTS / "logs", port=port)
    yield BillingSite(base_url, stripe)
    server.stop()
    stripe.stop()


@pytest.fixture
def billing_pages(billing_site: BillingSite, pages_factory: Callable[[str], Pages]) -> Iterator[Pages]:
    yield pages_factory(billing_site.base_url)
    worker_settled()


def tier_of(user: Any) -> str | None:
    account = CustomerAccount.objects.filter(user=user).first()
    return account.tier if account is not None else None


def subscribe_to_pro(page: Any, site: BillingSite, user: Any) -> None:
    """FREE → PRO the way a user does it: the upgrade button, Checkout, the webhook."""
    page.goto("/billing/")
    page.get_by_test_id("tier-pro").get_by_role("button", name="Upgrade to Pro").click()
    page.wait_for_url(re.compile(re.escape(site.stripe.public_url) + r"/checkout/"))
    page.locator("#pay").click()
    page.wait_for_url(re.compile(r"/billing/"))
    wait_until(lambda: tier_of(user) == Tier.PRO, timeout=30)


def test_upgrade_goes_through_checkout_and_marks_the_new_tier(billing_pages: Pages, billing_site: BillingSite) -> None:
    # given
    alice = UserFactory(username="alice")
    page = billing_pages.open("/billing/", alice)
    free, pro, business = (page.get_by_test_id(f"tier-{t}") for t in ("free", "pro", "business"))
    # then: prices from Stripe, the current tier marked, multiples rather than dollars of usage
    expect(free.locator("[data-price]")).to_have_text("$0/mo")
    expect(pro.locator("[data-price]")).to_have_text("$20/mo")
    expect(business.locator("[data-price]")).to_have_text("$100/mo")
    expect(free.locator("[data-current-badge]")).to_be_visible()
    expect(pro).to_contain_text("×5")
    expect(business).to_contain_text("×20")
    expect(page.get_by_test_id("credit-balance")).to_have_text("$0.00")
    screenshot(page, "billing-desktop-light", full_page=True)
    # when: upgrading
    pro.get_by_role("button", name="Upgrade to Pro").click()
    # then: the browser is at Stripe Checkout
    page.wait_for_url(re.compile(re.escape(billing_site.stripe.public_url) + r"/checkout/cs_"))
    expect(page.get_by_role("heading", name="Fake Stripe Checkout")).to_be_visible()
    # when: paying
    page.locator("#pay").click()
    # then: back on the billing page, thanked, and on Pro once the webhook has landed
    page.wait_for_url(re.compile(r"/billing/"))
    expect(page.get_by_test_id("toast")).to_contain_text("Your subscription was updated")
    expect(page.get_by_test_id("tier-pro").locator("[data-current-badge]")).to_be_visible(timeout=15_000)
    assert tier_of(alice) == Tier.PRO


def test_a_pending_downgrade_shows_the_banner_and_keep_cancels_it(
    billing_pages: Pages, billing_site: BillingSite
) -> None:
    # given: a Pro subscriber
    bob = UserFactory(username="bob")
    page = billing_pages.open("/billing/", bob)
    subscribe_to_pro(page, billing_site, bob)
    page.goto("/billing/")
    expect(page.get_by_test_id("tier-pro").locator("[data-current-badge]")).to_be_visible()
    # when: downgrading to Free
    page.get_by_test_id("tier-free").get_by_role("button", name="Downgrade to Free").click()
    # then: a confirmation that says when it takes effect
    dialog = page.get_by_test_id("downgrade-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(
        re.compile(r"You keep Pro until [A-Z][a-z]+ \d{1,2}, \d{4}\. After that your account moves to Free")
    )
    dialog.get_by_role("button", name="Downgrade to Free").click()
    # then: the pending change is announced, other changes are blocked, Pro is still current
    banner = page.get_by_test_id("pending-banner")
    expect(banner).to_contain_text(re.compile(r"Your plan changes to Free on [A-Z][a-z]+ \d{1,2}, \d{4}\."))
    expect(page.get_by_test_id("tier-business").get_by_role("button")).to_be_disabled()
    expect(page.get_by_test_id("tier-pro").get_by_role("button", name="Keep Pro")).to_be_enabled()
    assert tier_of(bob) == Tier.PRO
    screenshot(page, "billing-pending-desktop-light")
    page.set_viewport_size(PHONE)
    screenshot(page, "billing-pending-phone-light", full_page=True)
    # when: "Keep Pro"
    banner.get_by_role("button", name="Keep Pro").click()
    # then
    expect(banner).to_be_hidden(timeout=15_000)
    expect(page.get_by_test_id("toast")).to_contain_text("You keep Pro.")
    expect(page.get_by_test_id("tier-business").get_by_role("button")).to_be_enabled()
    assert tier_of(bob) == Tier.PRO


def test_keep_refetches_the_status_when_the_request_fails(billing_pages: Pages, billing_site: BillingSite) -> None:
    # given: a pending downgrade (scheduled for the period end)
    carol = UserFactory(username="carol")
    page = billing_pages.open("/billing/", carol, color_scheme="dark")
    subscribe_to_pro(page, billing_site, carol)
    page.goto("/billing/")
    page.get_by_test_id("tier-free").get_by_role("button", name="Downgrade to Free").click()
    page.get_by_test_id("downgrade-dialog").get_by_role("button", name="Downgrade to Free").click()
    banner = page.get_by_test_id("pending-banner")
    expect(banner).to_be_visible()
    # when: the "Keep" request dies on the network
    seen: list[str] = []
    page.on(
        "request",
        lambda request: seen.append(request.method) if request.url.endswith("/api/billing/subscription") else None,
    )

    def fail_post(route: Any) -> None:
        if route.request.method == "POST":
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/billing/subscription", fail_post)
    with page.expect_request(lambda r: r.url.endswith("/api/billing/subscription") and r.method == "GET"):
        banner.get_by_role("button", name="Keep Pro").click()
    # then: the error is shown and the status was read again after it
    expect(page.get_by_test_id("billing-error")).to_contain_text("Could not reach the server")
    assert seen == ["POST", "GET"]
    expect(banner.get_by_role("button", name="Keep Pro")).to_be_enabled()
    screenshot(page, "billing-error-desktop-dark")
    # when: trying again with a working network
    page.unroute("**/api/billing/subscription")
    banner.get_by_role("button", name="Keep Pro").click()
    # then
    expect(banner).to_be_hidden(timeout=15_000)


def test_top_up_goes_through_checkout_and_shows_the_new_balance(
    billing_pages: Pages, billing_site: BillingSite
) -> None:
    # given
    dave = UserFactory(username="dave")
    page = billing_pages.open("/billing/", dave)
    expect(page.get_by_test_id("credit-balance")).to_have_text("$0.00")
    # when: buying $12 of credits
    page.get_by_label("Add credits (US dollars)").fill("12")
    page.get_by_role("button", name="Buy credits").click()
    page.wait_for_url(re.compile(re.escape(billing_site.stripe.public_url) + r"/checkout/cs_"))
    expect(page.locator("#amount-total")).to_have_text("12.00 USD")
    page.locator("#pay").click()
    # then: back on the page, the balance and the history show the top-up
    page.wait_for_url(re.compile(r"/billing/"))
    expect(page.get_by_test_id("toast")).to_contain_text("Your credits will appear in a moment")
    expect(page.get_by_test_id("credit-balance")).to_have_text("$12.00", timeout=15_000)
    expect(page.get_by_test_id("transactions").locator("tbody tr").first).to_contain_text("+$12.00")
