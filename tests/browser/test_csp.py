"""The Content-Security-Policy blocks nothing the pages use, in Chromium against the real stack."""

from __future__ import annotations

import os
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Pages
from tests.factories import UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Every violation fires this event in the page; the list survives until the next navigation.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def _open(pages: Pages, path: str, user: Any | None = None) -> tuple[Any, list[str]]:
    context = pages.context(user)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    pages.watch(page)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    page.goto(path)
    return page, console


@pytest.mark.parametrize(
    ("path", "ready"),
    [
        ("/copilot", "chat-title"),
        ("/billing/", "top-up"),
        ("/account/", None),
        ("/admin/", None),
    ],
    ids=["_chat", "_billing", "_account", "_admin"],
)
def test_signed_in_pages_run_under_the_policy_without_a_violation(pages: Pages, path: str, ready: str | None) -> None:
    # given
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    # when
    page, console = _open(pages, path, staff)
    if ready is not None:
        expect(page.get_by_test_id(ready)).to_be_visible()
    if path != "/admin/":
        # site/usage.js fills the usage meter: proof that the module scripts ran
        expect(page.locator("[data-usage-mini=daily] [data-value]")).not_to_have_text("–")
    page.wait_for_load_state("networkidle")
    # then
    assert page.evaluate("window.__cspViolations") == []
    assert [text for text in console if "Content Security Policy" in text] == []


@pytest.mark.parametrize("path", ["/login/", "/signup/", "/password-reset/"], ids=["_login", "_signup", "_reset"])
def test_anonymous_pages_run_under_the_policy_without_a_violation(pages: Pages, path: str) -> None:
    page, console = _open(pages, path)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__cspViolations") == []
    assert [text for text in console if "Content Security Policy" in text] == []


def test_an_injected_inline_script_is_blocked_and_recorded(pages: Pages) -> None:
    """The control for the tests above: the recorder does see a violation."""
    page, console = _open(pages, "/login/")
    # when: an inline script element is added to the page
    page.evaluate(
        """() => { const s = document.createElement("script"); s.textContent = "window.__ran = true";
                   document.body.append(s); }"""
    )
    # then
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__ran === undefined") is True
    assert page.evaluate("window.__cspViolations") == ["script-src-elem inline"]
    assert any("Content Security Policy" in text for text in console)
