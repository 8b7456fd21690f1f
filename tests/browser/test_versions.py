"""Edit, regenerate, ‹ 2/3 › version switching, copy and the keyboard on the chat page, in Chromium
against daphne, a Celery worker, Redis and the scripted LLM; at 1280 px and 375 px, light and dark."""

from __future__ import annotations

import os
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import ChatMessage, ChatSession, TurnUsage
from tests.browser.conftest import DESKTOP, PHONE, Pages, fake, screenshot
from tests.factories import UserFactory

# Sync Playwright keeps an event loop running in this thread; the tests' own ORM calls are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LAYOUTS = [
    pytest.param(DESKTOP, "light", id="desktop-light"),
    pytest.param(DESKTOP, "dark", id="desktop-dark"),
    pytest.param(PHONE, "light", id="phone-light"),
    pytest.param(PHONE, "dark", id="phone-dark"),
]
BACKGROUNDS = {"light": "rgb(255, 255, 255)", "dark": "rgb(13, 17, 23)"}


def send(page: Any, text: str) -> None:
    box = page.get_by_test_id("composer-input")
    box.fill(text)
    box.press("Enter")


def wait_idle(page: Any) -> None:
    expect(page.get_by_test_id("stop")).to_be_hidden(timeout=30_000)
    expect(page.locator("[data-chat]")).to_have_attribute("data-state", "idle", timeout=30_000)


def clipboard(page: Any) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


@pytest.mark.parametrize(("viewport", "scheme"), LAYOUTS)
def test_edit_switch_versions_regenerate_and_copy(pages: Pages, viewport: dict[str, int], scheme: str) -> None:
    # given
    alice = UserFactory(username="alice")
    context = pages.context(alice, viewport=viewport, color_scheme=scheme)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = pages.open("/copilot", context=context)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUNDS[scheme]
    first = "Pick a fruit " + fake({"text": "Apple."})
    send(page, first)
    answer = page.get_by_test_id("assistant-message").last
    expect(answer.get_by_test_id("assistant-text")).to_have_text("Apple.", timeout=30_000)
    wait_idle(page)
    # when: the message is edited with the pencil
    question = page.get_by_test_id("user-message").last
    question.get_by_test_id("edit-message").click()
    editor = question.get_by_test_id("edit-input")
    expect(editor).to_have_value(first)
    box = editor.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    screenshot(page, f"versions-editing-{viewport['width']}-{scheme}")
    second = "Pick a berry " + fake({"text": "Strawberry."})
    editor.fill(second)
    question.get_by_test_id("edit-submit").click()
    # then: the new version is answered and shown as 2/2; the old one is kept
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Strawberry.", timeout=30_000)
    wait_idle(page)
    expect(page.get_by_test_id("user-message")).to_have_count(1)
    question = page.get_by_test_id("user-message").last
    expect(question.locator(".msg-body")).to_have_text(second)
    expect(question.get_by_test_id("versions-label")).to_have_text("2/2")
    # when: ‹ shows the first version again
    question.get_by_role("button", name="Previous version").click()
    # then
    expect(page.get_by_test_id("user-message").last.locator(".msg-body")).to_have_text(first)
    expect(page.get_by_test_id("user-message").last.get_by_test_id("versions-label")).to_have_text("1/2")
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Apple.")
    assert ChatSession.objects.get(user=alice).leaf_sequence == 1
    # when: the answer is regenerated
    page.get_by_test_id("assistant-message").last.get_by_test_id("regenerate").click()
    # then: a second version of the answer, the question asked once
    expect(page.get_by_test_id("assistant-message").last.get_by_test_id("versions-label")).to_have_text(
        "2/2", timeout=30_000
    )
    wait_idle(page)
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Apple.")
    expect(page.get_by_test_id("user-message")).to_have_count(1)
    assert TurnUsage.objects.filter(session__user=alice, outcome="completed").count() == 3
    assert ChatMessage.objects.filter(session__user=alice).count() == 5
    # when: the whole answer is copied
    page.get_by_test_id("assistant-message").last.get_by_test_id("copy-answer").click()
    # then
    expect(page.get_by_test_id("assistant-message").last.get_by_role("button", name="Copied")).to_be_visible()
    assert clipboard(page) == "Apple."
    screenshot(page, f"versions-regenerated-{viewport['width']}-{scheme}")
    # when: a code block is copied
    send(page, "Some code " + fake({"text": "Here:\n\n```python\nprint('hi')\n```"}))
    expect(page.get_by_test_id("assistant-message")).to_have_count(2, timeout=30_000)
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("print", timeout=30_000)
    wait_idle(page)
    page.get_by_test_id("assistant-message").last.get_by_role("button", name="Copy python to the clipboard").click()
    # then
    expect(page.get_by_test_id("assistant-message").last.locator(".copy-code")).to_have_text("Copied")
    assert clipboard(page) == "print('hi')"
    # regenerate is offered on the latest answer only
    expect(page.get_by_test_id("assistant-message").first.get_by_test_id("regenerate")).to_be_hidden()
    expect(page.get_by_test_id("assistant-message").last.get_by_test_id("regenerate")).to_be_visible()


def test_arrow_up_edits_the_last_message_and_escape_stops_the_reply(pages: Pages) -> None:
    # given
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    send(page, "Hello " + fake({"text": "Hi."}))
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Hi.", timeout=30_000)
    wait_idle(page)
    # when: ↑ in the empty composer
    page.get_by_test_id("composer-input").press("ArrowUp")
    # then: the last message of yours is being edited; Escape cancels the edit
    editor = page.get_by_test_id("edit-input")
    expect(editor).to_be_focused()
    editor.press("Escape")
    expect(editor).to_have_count(0)
    # when: a slow reply runs and Escape is pressed
    send(page, "Write a lot " + fake({"text": "a" * 600, "chunk_size": 2, "delay_ms": 40}))
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("aaaaaaaaaa", timeout=30_000)
    page.keyboard.press("Escape")
    # then: the reply is stopped, as with the Stop button
    message = page.get_by_test_id("assistant-message").last
    expect(message.get_by_test_id("notice")).to_have_text("Stopped", timeout=15_000)
    wait_idle(page)
    stopped = ChatMessage.objects.filter(session__user=alice, kind=ChatMessage.Kind.STOPPED)
    assert stopped.count() == 1


@pytest.mark.parametrize(("viewport", "scheme"), LAYOUTS)
def test_the_model_and_mode_picker_is_remembered_per_chat(pages: Pages, viewport: dict[str, int], scheme: str) -> None:
    # given
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice, viewport=viewport, color_scheme=scheme)
    model, mode = page.get_by_test_id("model-picker"), page.get_by_test_id("mode-picker")
    expect(model).to_have_value("standard")
    expect(mode).to_have_value("extended_thinking")
    expect(page.get_by_test_id("advanced-note")).to_be_hidden()
    # when: the advanced model, fast
    model.select_option("advanced")
    mode.select_option("fast")
    # then: its higher cost is said next to it
    expect(page.get_by_test_id("advanced-note")).to_have_text(
        "Advanced model: costs more: uses your daily and weekly limits faster."
    )
    expect(model.locator("option[value=advanced]")).to_have_text("Advanced · higher cost")
    box = model.bounding_box()
    assert box is not None and box["x"] + box["width"] <= viewport["width"]
    screenshot(page, f"picker-{viewport['width']}-{scheme}")
    # when: a message is sent
    send(page, "Hi " + fake({"text": "Hello."}))
    answer = page.get_by_test_id("assistant-message").last
    expect(answer.get_by_test_id("assistant-text")).to_have_text("Hello.", timeout=30_000)
    wait_idle(page)
    # then: the answer says, on hover, what wrote it
    answer = page.get_by_test_id("assistant-message").last
    answer.hover()
    choice = answer.get_by_test_id("answer-choice")
    expect(choice).to_have_attribute("data-label", "Advanced model · Fast")
    expect(choice).to_have_css("opacity", "1")
    session = ChatSession.objects.get(user=alice)
    assert (session.model, session.mode) == ("advanced", "fast")
    assert ChatMessage.objects.get(session=session, role="assistant").model == "advanced"
    # when: a new chat is opened, then the first one again
    if viewport is PHONE:
        page.get_by_role("button", name="Chats").click()
    page.get_by_test_id("new-chat").click()
    # then: a new chat starts from the defaults; the first one keeps its choice
    expect(model).to_have_value("standard")
    expect(mode).to_have_value("extended_thinking")
    if viewport is PHONE:
        page.get_by_role("button", name="Chats").click()
    page.locator(f'li[data-session-id="{session.pk}"] a.session-link').click()
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Hello.")
    expect(model).to_have_value("advanced")
    expect(mode).to_have_value("fast")


@pytest.mark.parametrize(
    ("viewport", "scheme"),
    [pytest.param(DESKTOP, "light", id="desktop-light"), pytest.param(PHONE, "dark", id="phone-dark")],
)
def test_each_answer_says_what_it_cost_the_limits(pages: Pages, viewport: dict[str, int], scheme: str) -> None:
    # given: limits of $0.20 a day and $1 a week
    from ratelimits.services import limit_override_set

    alice = UserFactory(username="alice")
    staff = UserFactory(username="staff", is_staff=True)
    limit_override_set(user=alice, daily_microdollars=200_000, weekly_microdollars=1_000_000, reason="t", actor=staff)
    page = pages.open("/copilot", alice, viewport=viewport, color_scheme=scheme)
    # when: an answer that cost $0.006, then one that failed before any output
    send(page, "Q " + fake({"text": "Paid.", "usage": {"prompt_tokens": 9, "completion_tokens": 3, "cost": 0.006}}))
    expect(page.get_by_test_id("assistant-text").last).to_have_text("Paid.", timeout=30_000)
    wait_idle(page)
    send(page, "Again " + fake({"http_status": 500}))
    expect(page.get_by_test_id("assistant-message")).to_have_count(2, timeout=30_000)
    wait_idle(page)
    # then
    lines = page.get_by_test_id("answer-usage")
    expect(lines).to_have_text(["used 3 % of today · 0.6 % of this week", "Not charged: the reply failed"])
    screenshot(page, f"answer-usage-{viewport['width']}-{scheme}")


def test_the_usage_sentence_rounds_and_names_the_window(pages: Pages) -> None:
    # given
    page = pages.open("/copilot", UserFactory(username="alice"))
    page.wait_for_function("() => window.copilotChat !== undefined")
    now = "2026-12-02T12:00:00Z"  # a Wednesday
    cases = [
        ({"charged": True, "daily_percent": 3.0, "weekly_percent": 0.6}, "2026-12-02T08:00:00Z"),
        ({"charged": True, "daily_percent": 0.04, "weekly_percent": 12.4}, "2026-12-01T08:00:00Z"),
        ({"charged": True, "daily_percent": None, "weekly_percent": 0.25}, "2026-11-29T08:00:00Z"),
        ({"charged": True, "daily_percent": None, "weekly_percent": None}, now),
        ({"charged": False, "outcome": "failed", "daily_percent": 0, "weekly_percent": 0}, now),
        ({"charged": False, "outcome": "cancelled", "daily_percent": 0, "weekly_percent": 0}, now),
        ({"charged": False, "outcome": "completed", "daily_percent": 0, "weekly_percent": 0}, now),
    ]
    # when
    texts = page.evaluate(
        """async ([cases, now]) => {
            const m = await import('/static/chat/answer_usage.js');
            return cases.map(([usage, at]) => m.usageText(usage, at, new Date(now)));
        }""",
        [cases, now],
    )
    # then
    assert texts == [
        "used 3 % of today · 0.6 % of this week",
        "used <0.1 % of that day · 12 % of this week",
        "used 0.3 % of that week",
        "Your plan has no usage limits",
        "Not charged: the reply failed",
        "Not charged: stopped before any output",
        "Not counted against your limits",
    ]
