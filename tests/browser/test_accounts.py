"""Signing up, logging in and the account page, in Chromium against the real stack."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from copilot_site.accounts.models import User
from tests.browser.conftest import PHONE, Pages, screenshot
from tests.factories import UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_sign_up_log_out_and_log_in(pages: Pages) -> None:
    # given
    page = pages.open("/signup/")
    # when: signing up
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Email").fill("dora@example.com")
    page.locator("#id_password1").fill("a-long-Passphrase-42")
    page.locator("#id_password2").fill("a-long-Passphrase-42")
    page.get_by_role("button", name="Sign up").click()
    # then: signed in, on the chat page
    expect(page).to_have_url(re.compile(r"/copilot$"))
    expect(page.get_by_test_id("chat-title")).to_have_text("New chat")
    assert User.objects.get(username="dora").email == "dora@example.com"
    # when: logging out and back in
    page.get_by_role("button", name="Log out").click()
    page.goto("/login/")
    page.get_by_label("Username").fill("dora")
    page.locator("#id_password").fill("a-long-Passphrase-42")
    page.get_by_role("button", name="Log in").click()
    # then
    expect(page).to_have_url(re.compile(r"/copilot$"))
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_account_page_has_api_keys_personal_cap_and_password_change(pages: Pages) -> None:
    # given
    alice = UserFactory(username="alice")
    page = pages.open("/account/", alice, viewport=PHONE)
    # when: creating a key
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    # then: shown once
    expect(page.get_by_test_id("new-key")).to_contain_text("laptop")
    # when: setting a personal daily cap (once the card has read the current one)
    expect(page.locator("[data-personal-cap-status]")).to_have_text("No personal cap.")
    page.get_by_label("Cap in US dollars per day").fill("0.50")
    page.get_by_role("button", name="Save cap").click()
    # then
    expect(page.locator("[data-personal-cap-status]")).to_have_text("Cap: $0.50 a day.")
    expect(page.get_by_role("link", name="Change password")).to_have_attribute("href", "/account/password/")
    screenshot(page, "account-phone-light", full_page=True)
