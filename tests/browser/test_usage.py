"""The usage indicator and the daily limit, in Chromium against the real stack."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from billing.services import credits_grant
from ratelimits.models import TierLimit
from ratelimits.services import usage_record
from tests.browser.conftest import PHONE, Pages, fake, screenshot
from tests.factories import UserFactory

# Sync Playwright keeps an event loop running in this thread; the tests' own ORM calls are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_hitting_the_daily_limit_shows_the_limit_message_and_full_bars(pages: Pages) -> None:
    # given: tiny FREE limits, today's already spent, and credits for a paid reset
    TierLimit.objects.create(tier="FREE", daily_limit_microdollars=1000, weekly_limit_microdollars=4000)
    alice = UserFactory(username="alice")
    usage_record(user=alice, microdollars=1000)
    credits_grant(user=alice, amount_cents=1000, idempotency_key="test-grant", reason="test")
    page = pages.open("/copilot", alice)
    # then: the header shows the daily bar full and the weekly one at a quarter
    daily = page.locator("[data-usage-mini=daily]")
    expect(daily.locator("[data-value]")).to_have_text("100%")
    expect(daily).to_have_attribute("data-level", "full")
    expect(page.locator("[data-usage-mini=weekly] [data-value]")).to_have_text("25%")
    # when: sending anyway
    page.get_by_test_id("composer-input").fill("Hello " + fake({"text": "Hi!"}))
    page.get_by_test_id("composer-input").press("Enter")
    # then: the limit message with its reset time and the paid reset offer; the text stays in the box
    alert = page.get_by_test_id("chat-alert")
    expect(alert).to_contain_text("You've reached your daily usage limit. Resets in")
    expect(alert).to_contain_text("It resets at")
    reset = alert.get_by_role("button", name="Reset daily limit for $5.00")
    expect(reset).to_be_visible()
    expect(page.get_by_test_id("composer-input")).to_have_value("Hello " + fake({"text": "Hi!"}))
    expect(page.get_by_test_id("user-message")).to_have_count(0)
    page.get_by_test_id("usage-toggle").click()
    panel = page.get_by_test_id("usage-panel")
    expect(panel.locator("[data-usage-window=daily] [data-percent]")).to_have_text("100% used")
    expect(panel.locator("[data-usage-window=daily] .bar")).to_have_attribute("aria-valuenow", "100")
    expect(panel.locator("[data-usage-window=daily] [data-resets]")).to_contain_text("Resets in")
    expect(panel.locator("[data-usage-window=weekly] [data-percent]")).to_have_text("25% used")
    screenshot(page, "usage-limit-desktop-light")
    page.get_by_test_id("usage-toggle").click()
    # when: paying for a reset
    reset.click()
    # then: the limit is lifted and the message can be sent
    expect(alert).to_contain_text("Your daily limit was reset.")
    expect(daily.locator("[data-value]")).to_have_text("0%")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Hi!", timeout=30_000)


def test_usage_bars_warn_from_80_percent_on_a_phone_in_dark_mode(pages: Pages) -> None:
    # given
    TierLimit.objects.create(tier="FREE", daily_limit_microdollars=1000, weekly_limit_microdollars=10_000)
    bob = UserFactory(username="bob")
    usage_record(user=bob, microdollars=850)
    # when
    page = pages.open("/copilot", bob, viewport=PHONE, color_scheme="dark")
    # then
    daily = page.locator("[data-usage-mini=daily]")
    expect(daily.locator("[data-value]")).to_have_text("85%")
    expect(daily).to_have_attribute("data-level", "warn")
    expect(page.locator("[data-usage-mini=weekly]")).to_have_attribute("data-level", "ok")
    page.get_by_test_id("usage-toggle").click()
    expect(page.get_by_test_id("usage-panel")).to_contain_text("85% used")
    screenshot(page, "usage-warning-phone-dark")
