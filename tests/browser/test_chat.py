"""The chat page in Chromium against daphne, a Celery worker, Redis and the scripted LLM."""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from chat.models import ChatMessage, ChatSession
from copilot_site.accounts.services import api_key_create
from tests.browser.conftest import PHONE, Pages, fake, screenshot
from tests.factories import UserFactory

# Sync Playwright keeps an event loop running in this thread; the tests' own ORM calls are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def send(page: Any, text: str, *, delivery: str | None = None) -> None:
    box = page.get_by_test_id("composer-input")
    box.fill(text)
    if delivery is not None:
        page.get_by_test_id("delivery").select_option(delivery)
    box.press("Enter")


def wait_idle(page: Any) -> None:
    """No turn streams and the list shows the database's version (stream-end hydration done)."""
    expect(page.get_by_test_id("stop")).to_be_hidden(timeout=30_000)
    expect(page.locator("[data-chat]")).to_have_attribute("data-state", "idle", timeout=30_000)


def test_streamed_answer_shows_markdown_a_tool_row_and_reasoning(pages: Pages) -> None:
    # given
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    script = fake(
        {
            "reasoning": "The user wants the time, so I will call the clock.",
            "tool_calls": [{"name": "get_current_time", "arguments": {}}],
        },
        {
            "reasoning": "Now I can answer.",
            "text": (
                "Here is the time, in **bold**.\n\n| zone | time |\n|---|---|\n| UTC | now |\n\n"
                "```python\nprint('hi')  # greet\n```"
            ),
            "chunk_size": 6,
            "delay_ms": 15,
        },
    )
    # when
    send(page, "What time is it? " + script)
    # then: the answer streams in, rendered as markdown
    answer = page.get_by_test_id("assistant-text").last
    expect(answer).to_contain_text("Here is the time, in bold.", timeout=30_000)
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("table td").first).to_have_text("UTC")
    expect(answer.locator(".codeblock .tok-keyword, .codeblock .tok-function").first).to_be_visible()
    expect(answer.get_by_role("button", name=re.compile("Copy python"))).to_be_visible()
    wait_idle(page)
    # the steps before the answer are one collapsible group holding the tool row and its reasoning
    message = page.get_by_test_id("assistant-message").last
    steps = message.get_by_test_id("steps-toggle")
    expect(steps).to_have_attribute("aria-expanded", "false")
    steps.click()
    tool = message.get_by_test_id("tool-row")
    expect(tool).to_have_count(1)
    expect(tool).to_have_attribute("data-tool-name", "get_current_time")
    expect(tool.get_by_test_id("tool-status")).to_have_text("completed")
    tool.get_by_role("button").click()
    expect(tool.locator(".tool-body")).to_contain_text('"utc"')
    # reasoning is collapsed, labelled with its duration, and expands inline
    reasoning = message.get_by_test_id("reasoning-toggle")
    expect(reasoning).to_have_count(2)
    expect(reasoning.first).to_have_attribute("aria-expanded", "false")
    expect(reasoning.first).to_contain_text(re.compile(r"Thought for \d+s|Reasoning"))
    reasoning.first.click()
    expect(message.get_by_test_id("reasoning-text").first).to_have_text(
        "The user wants the time, so I will call the clock."
    )
    screenshot(page, "chat-desktop-light")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "chat-desktop-dark")
    page.set_viewport_size(PHONE)
    screenshot(page, "chat-phone-dark")
    page.emulate_media(color_scheme="light")
    screenshot(page, "chat-phone-light")
    page.set_viewport_size({"width": 1280, "height": 860})
    steps.click()
    screenshot(page, "chat-answer-desktop-light")
    # and the page shows exactly what the database holds (at the stream's end it reloads the rows)
    session = ChatSession.objects.get(user=alice)
    roles = list(ChatMessage.objects.filter(session=session).order_by("sequence").values_list("role", flat=True))
    assert roles == ["user", "reasoning", "assistant", "tool", "reasoning", "assistant"]
    page.reload()
    message = page.get_by_test_id("assistant-message").last
    message.get_by_test_id("steps-toggle").click()
    expect(message.get_by_test_id("reasoning-toggle")).to_have_count(2)
    expect(page).to_have_url(re.compile(rf"sessionId={session.pk}"))


def test_demo_model_answers_what_time_is_it_with_a_tool(pages: Pages) -> None:
    # given
    bob = UserFactory(username="bob")
    page = pages.open("/copilot", bob)
    # when: no script marker, so the scripted server behaves as the offline demo model
    send(page, "what time is it")
    # then
    message = page.get_by_test_id("assistant-message").last
    expect(message.get_by_test_id("assistant-text")).to_contain_text("It's", timeout=30_000)
    wait_idle(page)
    message.get_by_test_id("steps-toggle").click()
    expect(message.get_by_test_id("tool-row")).to_have_attribute("data-tool-name", "get_current_time")
    expect(message.get_by_test_id("tool-row").locator(".tool-summary")).to_have_text("Checked the time")


def test_stop_mid_stream_then_send_again(pages: Pages) -> None:
    # given: a long, slow answer
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    send(page, "Write a lot " + fake({"text": "a" * 600, "chunk_size": 2, "delay_ms": 40}))
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("aaaaaaaaaa", timeout=30_000)
    # when
    page.get_by_test_id("stop").click()
    # then: the turn ends with the stop notice, and the composer is ready again
    message = page.get_by_test_id("assistant-message").last
    expect(message.get_by_test_id("notice")).to_have_text("Stopped", timeout=15_000)
    expect(page.get_by_test_id("stop")).to_be_hidden()
    stopped_text = message.get_by_test_id("assistant-text").inner_text()
    assert 0 < len(stopped_text) < 600
    # when: the next message
    send(page, "Again " + fake({"text": "A fresh answer."}))
    # then
    expect(page.get_by_test_id("assistant-text").last).to_have_text("A fresh answer.", timeout=30_000)
    expect(page.get_by_test_id("user-message")).to_have_count(2)


def test_follow_up_sent_during_a_slow_tool_becomes_a_bubble_in_order(pages: Pages, slow_http: str) -> None:
    # given: a turn whose first round fetches a page that takes 3 s
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    script = fake(
        {"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]},
        {"text": "Got your follow-up too.", "chunk_size": 8},
    )
    send(page, "Read that page " + script)
    running = page.get_by_test_id("tool-row").filter(has_text="running")
    expect(running).to_have_count(1, timeout=30_000)
    # when: a follow-up while the tool runs, sent into this turn
    send(page, "Also summarise it in one line", delivery="now")
    # then: it waits as a chip…
    chip = page.get_by_test_id("pending-chip")
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("Also summarise it in one line")
    screenshot(page, "chat-pending-chip")
    page.set_viewport_size(PHONE)
    screenshot(page, "chat-pending-chip-phone")
    page.set_viewport_size({"width": 1280, "height": 860})
    # …then becomes a user bubble before the still-streaming answer
    expect(chip).to_have_count(0, timeout=30_000)
    expect(page.get_by_test_id("user-message")).to_have_count(2)
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Got your follow-up too.", timeout=30_000)
    wait_idle(page)
    # and after the stream-end reload it sits after the tool result that consumed it
    order = page.locator("[data-testid=message-list] > .msg").evaluate_all(
        "nodes => nodes.map(n => n.dataset.testid + ':' + n.innerText.trim().split('\\n')[0])"
    )
    assert [item.split(":")[0] for item in order] == [
        "user-message",
        "assistant-message",
        "user-message",
        "assistant-message",
    ]
    assert order[2] == "user-message:Also summarise it in one line"
    rows = ChatMessage.objects.filter(session__user=alice).order_by("sequence")
    assert [(r.role, r.content if r.role == "user" else None) for r in rows if r.role in ("user", "tool")] == [
        ("user", "Read that page " + script),
        ("tool", None),
        ("user", "Also summarise it in one line"),
    ]


def test_reload_mid_turn_resumes_the_live_turn(pages: Pages) -> None:
    # given: a slow answer, partly streamed
    alice = UserFactory(username="alice")
    text = " ".join(f"word{i}" for i in range(70))
    page = pages.open("/copilot", alice)
    send(page, "Count " + fake({"text": text, "chunk_size": 5, "delay_ms": 70}))
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("word3", timeout=30_000)
    # when
    page.reload()
    # then: what was streamed is shown again at once, the turn goes on live, nothing twice
    answer = page.get_by_test_id("assistant-text").last
    expect(answer).to_contain_text("word3", timeout=10_000)
    expect(page.get_by_test_id("stop")).to_be_visible()
    expect(answer).to_have_text(text, timeout=30_000)
    wait_idle(page)
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    expect(page.get_by_test_id("assistant-text")).to_have_text([text])


def test_two_tabs_show_the_same_turn(pages: Pages) -> None:
    # given: one chat open in two tabs
    alice = UserFactory(username="alice")
    session = ChatSession.objects.create(user=alice)
    context = pages.context(alice)
    first = pages.open(f"/copilot?sessionId={session.pk}", context=context)
    second = pages.open(f"/chat/{session.pk}/", context=context)
    expect(first.get_by_test_id("chat-title")).to_have_text("Untitled chat")
    second.wait_for_function(
        "() => window.copilotChat && window.copilotChat.state().socket && window.copilotChat.state().socket.ready"
    )
    text = "Both tabs see this answer as it streams."
    # when: the first tab sends
    send(first, "Hello " + fake({"text": text, "chunk_size": 3, "delay_ms": 60}))
    # then: the second tab shows the message and follows the answer live
    expect(second.get_by_test_id("user-message")).to_have_text(
        ["Hello " + fake({"text": text, "chunk_size": 3, "delay_ms": 60})], timeout=30_000
    )
    expect(second.get_by_test_id("stop")).to_be_visible(timeout=30_000)
    expect(second.get_by_test_id("assistant-text")).to_have_text([text], timeout=30_000)
    expect(first.get_by_test_id("assistant-text")).to_have_text([text], timeout=30_000)
    wait_idle(second)


def test_the_sidebar_stops_showing_replying_when_another_chats_turn_ends(pages: Pages) -> None:
    # given: a slow turn running in one chat (started over the API) while alice looks at another
    alice = UserFactory(username="alice")
    busy = ChatSession.objects.create(user=alice, title="Busy chat")
    quiet = ChatSession.objects.create(user=alice, title="Quiet chat")
    _, key = api_key_create(user=alice, name="tests")
    body = {"message": "go " + fake({"text": "slow answer " * 16, "chunk_size": 4, "delay_ms": 150})}
    turn = threading.Thread(
        target=httpx.post,
        args=(f"{pages.base_url}/api/chat/sessions/{busy.pk}/stream",),
        kwargs={"json": body, "headers": {"Authorization": f"Bearer {key}"}, "timeout": 60},
    )
    turn.start()
    page = pages.open(f"/copilot?sessionId={quiet.pk}", alice)
    busy_link = page.get_by_test_id("session-link").filter(has_text="Busy chat")
    expect(busy_link).to_have_text("Busy chat ●", timeout=10_000)
    # when: that turn ends
    turn.join(60)
    # then: the entry says so without a reload
    expect(busy_link).to_have_text("Busy chat", timeout=15_000)
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1


def test_a_turn_that_starts_and_ends_during_the_stream_end_refetch_still_shows(pages: Pages) -> None:
    # given: alice's chat; the refetch after her turn's end is held back while another
    # client runs a whole short turn in the same chat (as auto-continue can)
    alice = UserFactory(username="alice")
    session = ChatSession.objects.create(user=alice, title="Chat")
    _, key = api_key_create(user=alice, name="tests")
    page = pages.open(f"/copilot?sessionId={session.pk}", alice)
    expect(page.get_by_test_id("chat-title")).to_have_text("Chat")
    page.wait_for_function("() => window.copilotChat.state().socket && window.copilotChat.state().socket.ready")
    held: list[str] = []

    def hold_refetch(route: Any) -> None:
        answered = ChatMessage.objects.filter(session=session, role="assistant").count()
        if held or answered != 1:
            route.continue_()
            return
        response = route.fetch()  # the server reads the chat now: one turn, none running
        other = read_sse_text(f"{pages.base_url}/api/chat/sessions/{session.pk}/stream", key, "elsewhere")
        held.append(other)
        page.wait_for_timeout(500)  # its frames reach the page's socket while the refetch is out
        route.fulfill(response=response)

    page.route(re.compile(r"/api/chat/sessions/[0-9a-f-]+\?limit=\d+$"), hold_refetch)
    # when
    send(page, "first " + fake({"text": "First answer."}))
    # then: the page shows the turn that ran inside its refetch too
    expect(page.get_by_test_id("assistant-text")).to_have_text(["First answer.", "From elsewhere."], timeout=30_000)
    assert held == ["From elsewhere."]
    wait_idle(page)


def read_sse_text(url: str, key: str, message: str) -> str:
    """Run a whole turn over the API (as another client) and return its text."""
    body = {"message": message + " " + fake({"text": "From elsewhere."})}
    text = []
    with httpx.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk["type"] == "text-delta":
                    text.append(chunk["delta"])
    return "".join(text)


XSS_TEXT = (
    "Look: <script>window.__xss = 'script'; alert('script')</script>\n\n"
    "<img src=\"x\" onerror=\"window.__xss = 'img'; alert('img')\">\n\n"
    "[click me](javascript:alert('link')) and [ok](https://example.com)\n\n"
    '<a href="javascript:alert(1)" onclick="alert(2)">raw link</a>\n\n'
    "![pic](javascript:alert('pic'))"
)


def test_an_xss_payload_renders_inert(pages: Pages) -> None:
    # given
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    # when: both the user's message and the assistant's answer carry the payload
    send(page, XSS_TEXT + " " + fake({"text": XSS_TEXT, "chunk_size": 7}))
    answer = page.get_by_test_id("assistant-text").last
    expect(answer).to_contain_text("and ok", timeout=30_000)
    wait_idle(page)
    # then: nothing ran, and nothing executable is in the message DOM
    log = page.get_by_test_id("message-list")
    assert pages.dialogs == []
    assert page.evaluate("() => window.__xss === undefined")
    assert log.locator("script, img, iframe, [onerror], [onclick]").count() == 0
    hrefs = log.locator("a[href]").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == ["https://example.com"]
    expect(answer).to_contain_text("<script>window.__xss")
    expect(page.get_by_test_id("user-message").last).to_contain_text('<img src="x" onerror=')


def test_sidebar_shows_generated_titles_and_renames_and_deletes(pages: Pages) -> None:
    # given
    alice = UserFactory(username="alice")
    older = ChatSession.objects.create(user=alice, title="An older chat")
    page = pages.open("/copilot", alice)
    expect(page.get_by_test_id("session-link")).to_have_text(["An older chat"])
    # when: a first message in a new chat
    send(page, "plan a trip to Lisbon")  # the demo model titles it from the message
    # then: the chat appears on top and gets its generated title
    links = page.get_by_test_id("session-link")
    expect(links.first).to_have_text("Plan A Trip To Lisbon", timeout=30_000)
    expect(page.get_by_test_id("chat-title")).to_have_text("Plan A Trip To Lisbon")
    expect(links.first).to_have_attribute("aria-current", "page")
    # when: renaming it
    page.get_by_role("button", name="Rename “Plan A Trip To Lisbon”").click()
    page.get_by_label("New chat title").fill("Lisbon in May")
    page.get_by_label("New chat title").press("Enter")
    # then
    expect(links.first).to_have_text("Lisbon in May")
    expect(page.get_by_test_id("chat-title")).to_have_text("Lisbon in May")
    assert ChatSession.objects.exclude(pk=older.pk).get(user=alice).title == "Lisbon in May"
    # when: opening the other chat from the sidebar, then deleting it
    links.nth(1).click()
    expect(page).to_have_url(re.compile(rf"sessionId={older.pk}"))
    expect(page.get_by_test_id("chat-title")).to_have_text("An older chat")
    page.get_by_role("button", name="Delete “An older chat”").click()
    # then: gone, and the page is a new chat
    expect(links).to_have_text(["Lisbon in May"])
    expect(page.get_by_test_id("chat-title")).to_have_text("New chat")
    assert pages.dialogs == ["confirm: Delete “An older chat”? This cannot be undone."]
    assert not ChatSession.objects.filter(pk=older.pk).exists()


def test_scrolling_up_loads_older_messages_before_the_current_ones(pages: Pages) -> None:
    # given: a long conversation, more than two pages
    alice = UserFactory(username="alice")
    session = ChatSession.objects.create(user=alice, title="Long chat")
    ChatMessage.objects.bulk_create(
        ChatMessage(
            session=session,
            sequence=i,
            parent_sequence=i - 1 if i else None,
            role="user" if i % 2 == 0 else "assistant",
            content=f"message {i}",
        )
        for i in range(130)
    )
    ChatSession.objects.filter(pk=session.pk).update(leaf_sequence=129)
    page = pages.open(f"/chat/{session.pk}/", alice, viewport=PHONE)
    expect(page.get_by_test_id("assistant-text").last).to_have_text("message 129")
    expect(page.get_by_test_id("user-message")).to_have_count(25)
    # when: scrolling to the top, twice
    for expected in (50, 65):
        page.locator("#chat-scroll").evaluate("node => { node.scrollTop = 0; }")
        expect(page.get_by_test_id("user-message")).to_have_count(expected)
    # then: every message once, oldest first, with no "load more" at the bottom
    texts = page.locator("[data-testid=message-list] .msg-body").all_inner_texts()
    assert texts == [f"message {i}" for i in range(130)]
    expect(page.locator("#older-status")).to_have_text("Start of the conversation")


def test_a_message_sent_as_the_next_turn_waits_for_the_running_one(pages: Pages, slow_http: str) -> None:
    # given: a turn busy with a slow tool
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    script = fake(
        {"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]},
        {"text": "First answer.", "chunk_size": 8},
    )
    send(page, "Read it " + script)
    expect(page.get_by_test_id("tool-row").filter(has_text="running")).to_have_count(1, timeout=30_000)
    # when: the next message is sent as the next turn
    follow_up = "Then this " + fake({"text": "Next turn answer."})
    send(page, follow_up, delivery="next_turn")
    # then: it waits as a chip through the whole first turn…
    chip = page.get_by_test_id("pending-chip")
    expect(chip).to_contain_text("queued · next turn")
    expect(page.get_by_test_id("assistant-text").first).to_have_text("First answer.", timeout=30_000)
    # …and is answered in a turn of its own, after the first answer
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Next turn answer.", timeout=30_000)
    expect(chip).to_have_count(0)
    wait_idle(page)
    expect(page.get_by_test_id("user-message")).to_have_text(["Read it " + script, follow_up])
    expect(page.get_by_test_id("assistant-text")).to_have_text(["First answer.", "Next turn answer."])


def test_a_provider_error_shows_inline_with_a_retry(pages: Pages) -> None:
    # given: the model fails after a few words
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    failing = "Try " + fake({"text": "Partial words that never finish", "chunk_size": 4, "error_after_chunks": 2})
    # when
    send(page, failing)
    # then: the error is shown in the answer, with what streamed before it and a way forward
    error = page.get_by_test_id("inline-error")
    expect(error).to_contain_text("Something went wrong while the answer was being written. Try again.", timeout=30_000)
    expect(error).not_to_contain_text("Upstream provider error")  # the provider's own text: logs only
    expect(error.get_by_role("button", name="Retry")).to_be_visible()
    wait_idle(page)
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Partial ")
    screenshot(page, "chat-provider-error")
    # when: retrying (the scripted server fails the same way again)
    error.get_by_role("button", name="Retry").click()
    # then: the same message went again as a new turn
    expect(page.get_by_test_id("user-message")).to_have_text([failing, failing], timeout=30_000)
    expect(page.get_by_test_id("inline-error")).to_have_count(1, timeout=30_000)
    wait_idle(page)
