"""Chat search (Ctrl/Cmd+K), export and share, in Chromium against the real stack,
at 1280 px and 375 px, in light and dark."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import ChatMessage, ChatSession, SharedChat
from chat.services.shares import share_create
from tests.browser.conftest import DESKTOP, PHONE, Pages, screenshot
from tests.browser.test_csp import _open
from tests.factories import UserFactory, link_rows

# Sync Playwright keeps an event loop running in this thread; the tests' own ORM calls are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LOOKS = [
    pytest.param(DESKTOP, "light", id="_desktop_light"),
    pytest.param(DESKTOP, "dark", id="_desktop_dark"),
    pytest.param(PHONE, "light", id="_phone_light"),
    pytest.param(PHONE, "dark", id="_phone_dark"),
]


def _chat(user: Any, title: str | None, messages: list[tuple[str, str]], *, hour: int) -> ChatSession:
    session = ChatSession.objects.create(user=user, title=title)
    rows = [ChatMessage(session=session, sequence=n, role=r, content=text) for n, (r, text) in enumerate(messages)]
    ChatMessage.objects.bulk_create(rows)
    link_rows(session)  # one branch, as messages_save_new writes them
    stamp = dt.datetime(2026, 1, 2, hour, tzinfo=dt.UTC)
    ChatSession.objects.filter(pk=session.pk).update(updated_at=stamp)
    return session


@pytest.mark.parametrize(("viewport", "scheme"), LOOKS)
def test_ctrl_k_searches_titles_and_messages_and_opens_a_result(
    pages: Pages, viewport: dict[str, int], scheme: str
) -> None:
    # given
    alice = UserFactory(username="alice")
    bob = UserFactory(username="bob")
    _chat(alice, "Deploy checklist", [("user", "what to check")], hour=9)
    body_hit = _chat(
        alice,
        "Weekend",
        [("user", "How do I <b>deploy</b> to a server?"), ("assistant", "Use the deploy script, then check the logs.")],
        hour=10,
    )
    _chat(alice, "Soup", [("user", "a recipe")], hour=11)
    _chat(bob, "Bob deploys", [("user", "deploy bob")], hour=12)
    page = pages.open("/copilot", alice, viewport=viewport, color_scheme=scheme)
    expect(page.get_by_test_id("session-link")).to_have_count(3)
    # when: Ctrl+K, then a query
    page.locator("body").press("Control+k")
    box = page.get_by_test_id("search-input")
    expect(box).to_be_focused()
    expect(box).to_be_visible()
    box.fill("deploy")
    # then: alice's two chats, newest first, the snippet's hit marked; bob's never
    results = page.get_by_test_id("search-result")
    expect(results).to_have_count(2)
    expect(page.get_by_test_id("session-list")).to_be_hidden()
    expect(results.nth(0).locator(".search-title")).to_have_text("Weekend")
    snippet = results.nth(0).get_by_test_id("search-snippet")
    expect(snippet).to_contain_text("Use the deploy script, then check the logs.")
    expect(snippet.locator("mark")).to_have_text(["deploy"])
    expect(results.nth(1).locator(".search-title mark")).to_have_text("Deploy")
    expect(page.get_by_test_id("search-results").get_by_role("status")).to_have_text("2 chats found")
    screenshot(page, f"search-results-{viewport['width']}-{scheme}")
    # an HTML payload in a message is text
    box.fill("server")
    expect(results).to_have_count(1)
    expect(results.nth(0).get_by_test_id("search-snippet")).to_contain_text("How do I <b>deploy</b> to a server?")
    expect(results.nth(0).locator("b")).to_have_count(0)
    # when: a result is opened
    results.nth(0).click()
    # then
    expect(page.get_by_test_id("chat-title")).to_have_text("Weekend")
    expect(page).to_have_url(f"{pages.base_url}/copilot?sessionId={body_hit.pk}")
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    if viewport is PHONE:
        expect(page.locator("#chat-sidebar")).not_to_be_in_viewport()
    # when: Cmd+K (macOS) focuses the box again; Escape in it clears the search
    page.locator("body").press("Meta+k")
    expect(box).to_be_focused()
    box.press("Escape")
    expect(box).to_have_value("")
    expect(page.get_by_test_id("session-list")).to_be_visible()
    expect(page.get_by_test_id("search-results")).to_be_hidden()


def test_search_pages_with_more_results_and_says_when_nothing_matches(pages: Pages) -> None:
    # given: 22 matching chats (a page is 20)
    alice = UserFactory(username="alice")
    for n in range(22):
        _chat(alice, f"Llama {n:02d}", [("user", "about llamas")], hour=n)
    page = pages.open("/copilot", alice)
    box = page.get_by_test_id("search-input")
    # when
    box.fill("llama")
    # then
    results = page.get_by_test_id("search-result")
    expect(results).to_have_count(20)
    expect(results.first.locator(".search-title")).to_have_text("Llama 21")
    more = page.get_by_role("button", name="More results")
    more.click()
    expect(results).to_have_count(22)
    expect(results.last.locator(".search-title")).to_have_text("Llama 00")
    expect(more).to_be_hidden()
    # when: nothing matches
    box.fill("zebra")
    # then
    expect(page.get_by_test_id("search-results").get_by_role("status")).to_have_text("No chats match “zebra”.")
    expect(results).to_have_count(0)


def _chat_with_a_tool_call(user: Any) -> ChatSession:
    session = _chat(user, "Maths help", [("user", "What is 6*7?")], hour=9)
    ChatMessage.objects.bulk_create(
        [
            ChatMessage(
                session=session,
                sequence=1,
                role="assistant",
                content="",
                tool_calls=[{"id": "c1", "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}],
            ),
            ChatMessage(
                session=session, sequence=2, role="tool", tool_call_id="c1", name="calculator", content='{"result": 42}'
            ),
            ChatMessage(session=session, sequence=3, role="assistant", content="It is **42**."),
        ]
    )
    link_rows(session)
    return session


@pytest.mark.parametrize(("viewport", "scheme"), LOOKS)
def test_export_downloads_markdown_and_json(pages: Pages, viewport: dict[str, int], scheme: str) -> None:
    # given
    alice = UserFactory(username="alice")
    session = _chat_with_a_tool_call(alice)
    page = pages.open(f"/chat/{session.pk}/", alice, viewport=viewport, color_scheme=scheme)
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    # when
    page.get_by_test_id("export-toggle").click()
    screenshot(page, f"export-menu-{viewport['width']}-{scheme}")
    with page.expect_download() as markdown_download:
        page.get_by_test_id("export-md").click()
    page.get_by_test_id("export-toggle").click()
    with page.expect_download() as json_download:
        page.get_by_test_id("export-json").click()
    # then
    short = str(session.pk)[:8]
    markdown, document = markdown_download.value, json_download.value
    assert markdown.suggested_filename == f"maths-help-{short}.md"
    assert json_download.value.suggested_filename == f"maths-help-{short}.json"
    text = Path(markdown.path()).read_text()
    assert text.startswith("# Maths help\n\n")
    assert '**Tool call** `calculator` (`c1`)\n\n```json\n{\n  "expression": "6*7"\n}\n```' in text
    assert text.endswith("It is **42**.\n")
    body = json.loads(Path(document.path()).read_text())
    assert [(m["role"], m["text"]) for m in body["messages"]] == [
        ("user", "What is 6*7?"),
        ("assistant", ""),
        ("tool", ""),
        ("assistant", "It is **42**."),
    ]
    assert body["messages"][2]["tool_result"] == {"tool_call_id": "c1", "name": "calculator", "output": {"result": 42}}
    expect(page.locator(".export-menu .menu")).to_be_hidden()


def test_export_is_offered_only_for_a_saved_chat(pages: Pages) -> None:
    # given
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    # then
    expect(page.get_by_test_id("chat-title")).to_have_text("New chat")
    expect(page.get_by_test_id("export-toggle")).to_be_hidden()


@pytest.mark.parametrize(("viewport", "scheme"), LOOKS)
def test_share_creates_copies_and_revokes_a_link(pages: Pages, viewport: dict[str, int], scheme: str) -> None:
    # given: a chat with a tool call and a message carrying HTML
    alice = UserFactory(username="alice")
    session = _chat_with_a_tool_call(alice)
    ChatMessage.objects.create(session=session, sequence=4, role="user", content='<img src=x onerror="alert(1)"> ok?')
    ChatMessage.objects.create(
        session=session, sequence=5, role="assistant", content="Yes: `code` and a [link](https://example.com)."
    )
    link_rows(session)
    page = pages.open(f"/chat/{session.pk}/", alice, viewport=viewport, color_scheme=scheme)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=pages.base_url)
    expect(page.get_by_test_id("assistant-message")).to_have_count(2)
    # when: a link without tool internals is made and copied
    page.get_by_test_id("share-open").click()
    dialog = page.get_by_test_id("share-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_test_id("share-empty")).to_be_visible()
    dialog.get_by_test_id("share-hide-tools").check()
    dialog.get_by_test_id("share-create").click()
    url_box = dialog.get_by_test_id("share-url")
    expect(url_box).to_have_value(re.compile(rf"^{re.escape(pages.base_url)}/share/[A-Za-z0-9_-]{{43}}$"))
    dialog.get_by_test_id("share-copy").click()
    expect(dialog.get_by_test_id("share-status")).to_have_text("Link copied to the clipboard.")
    link = url_box.input_value()
    assert page.evaluate("navigator.clipboard.readText()") == link
    expect(dialog.get_by_test_id("share-item")).to_have_count(1)
    expect(dialog.get_by_test_id("share-item")).to_contain_text("tools hidden")
    screenshot(page, f"share-dialog-{viewport['width']}-{scheme}")
    # then: anyone opens the snapshot, rendered like the chat, without the tool call
    public = pages.open(link, None, viewport=viewport, color_scheme=scheme)
    expect(public.get_by_test_id("shared-title")).to_have_text("Maths help")
    messages = public.get_by_test_id("message-list")
    expect(messages).to_have_attribute("data-ready", "true")
    expect(public.get_by_test_id("user-message")).to_have_text(["What is 6*7?", '<img src=x onerror="alert(1)"> ok?'])
    expect(public.get_by_test_id("assistant-message").first.locator("strong")).to_have_text("42")
    expect(messages.locator("a[href='https://example.com']")).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(messages.locator("img")).to_have_count(0)
    expect(messages.get_by_test_id("tool-row")).to_have_count(0)
    expect(public.locator('meta[name="robots"]')).to_have_attribute("content", "noindex, nofollow")
    expect(public.get_by_test_id("shared-note")).to_contain_text("tool calls hidden")
    expect(public.get_by_test_id("composer")).to_have_count(0)
    screenshot(public, f"shared-page-{viewport['width']}-{scheme}", full_page=True)
    # when: the owner revokes it
    dialog.get_by_test_id("share-revoke").click()
    # then
    expect(dialog.get_by_test_id("share-status")).to_have_text("Link revoked: it no longer opens.")
    expect(dialog.get_by_test_id("share-item")).to_have_count(0)
    expect(dialog.get_by_test_id("share-created")).to_be_hidden()
    public.reload()
    expect(public.get_by_test_id("share-missing")).to_contain_text("This link does not work")
    assert pages.dialogs == []
    assert SharedChat.objects.count() == 0


def test_a_shared_link_with_tool_internals_shows_the_tool_row(pages: Pages) -> None:
    # given
    alice = UserFactory(username="alice")
    session = _chat_with_a_tool_call(alice)
    page = pages.open(f"/chat/{session.pk}/", alice)
    page.get_by_test_id("share-open").click()
    dialog = page.get_by_test_id("share-dialog")
    dialog.get_by_test_id("share-create").click()
    url_box = dialog.get_by_test_id("share-url")
    expect(url_box).to_have_value(re.compile("/share/"))
    # when
    public = pages.open(url_box.input_value(), None)
    # then
    expect(public.get_by_test_id("message-list")).to_have_attribute("data-ready", "true")
    public.get_by_test_id("steps-toggle").click()
    expect(public.get_by_test_id("tool-row")).to_have_attribute("data-tool-name", "calculator")
    # when: Escape closes the dialog
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_the_shared_page_runs_under_the_content_security_policy(pages: Pages) -> None:
    # given
    alice = UserFactory(username="alice")
    session = _chat_with_a_tool_call(alice)
    created = share_create(user=alice, session_id=session.pk, hide_tool_internals=False)
    # when
    page, console = _open(pages, f"/share/{created.token}")
    expect(page.get_by_test_id("message-list")).to_have_attribute("data-ready", "true")
    page.wait_for_load_state("networkidle")
    # then
    assert page.evaluate("window.__cspViolations") == []
    assert [text for text in console if "Content Security Policy" in text] == []
