"""Tools that ask first, on the chat page in Chromium: Approve and Deny, at 1280 px and 375 px,
light and dark, against a daphne + worker pair with approvals on (tests/chat/turns/approval_stack.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.models import ChatMessage, ToolApproval
from tests.browser.conftest import PHONE, Pages, fake, screenshot, wait_until
from tests.chat.turns.approval_stack import approval_stack, approval_worker_settled
from tests.factories import UserFactory

# Sync Playwright keeps an event loop running in this thread; the tests' own ORM calls are safe.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CALC = {"name": "calculator", "arguments": {"expression": "6*7"}, "id": "call_calc_1"}


@pytest.fixture(scope="module")
def approvals_site(live_env: dict[str, str]) -> Iterator[str]:
    with approval_stack(live_env, name="approvals-browser") as base_url:
        yield base_url


@pytest.fixture
def stack(approvals_site: str, fake_llm: Any) -> Iterator[str]:
    """This module's site: the approval pair instead of the suite's shared one."""
    fake_llm.reset()
    yield approvals_site
    approval_worker_settled()


def send(page: Any, text: str) -> None:
    box = page.get_by_test_id("composer-input")
    box.fill(text)
    box.press("Enter")


def wait_idle(page: Any) -> None:
    expect(page.get_by_test_id("stop")).to_be_hidden(timeout=30_000)
    expect(page.locator("[data-chat]")).to_have_attribute("data-state", "idle", timeout=30_000)


def test_approve_runs_the_tool(pages: Pages) -> None:
    # given: a turn whose calculator call asks first
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    send(page, "What is 6*7? " + fake({"tool_calls": [CALC]}, {"text": "It is **42**."}))
    # then: the page asks, showing the tool's input
    box = page.get_by_test_id("approval")
    expect(box).to_be_visible(timeout=30_000)
    expect(box).to_contain_text("The copilot wants to run calculator. Allow it?")
    expect(box.get_by_test_id("approval-input")).to_contain_text('"expression": "6*7"')
    expect(page.get_by_test_id("tool-status")).to_have_text("waiting for your approval")
    screenshot(page, "approval-desktop-light")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "approval-desktop-dark")
    page.emulate_media(color_scheme="light")
    # when
    box.get_by_test_id("approve").click()
    # then: the tool runs and the answer streams in
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("It is 42.", timeout=30_000)
    wait_idle(page)
    expect(page.get_by_test_id("approval")).to_have_count(0)
    message = page.get_by_test_id("assistant-message").last
    message.get_by_test_id("steps-toggle").click()
    expect(message.get_by_test_id("tool-status")).to_have_text("completed")
    assert ToolApproval.objects.get().status == "approved"
    assert ChatMessage.objects.get(role="tool").content == '{"expression": "6*7", "result": 42}'


def test_deny_with_a_reason_on_a_phone_in_dark_mode(pages: Pages, fake_llm: Any) -> None:
    # given
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice, viewport=PHONE, color_scheme="dark")
    send(page, "What is 6*7? " + fake({"tool_calls": [CALC]}, {"text": "All right, I will not calculate."}))
    box = page.get_by_test_id("approval")
    expect(box).to_be_visible(timeout=30_000)
    screenshot(page, "approval-phone-dark")
    page.emulate_media(color_scheme="light")
    screenshot(page, "approval-phone-light")
    # when
    box.get_by_test_id("approval-reason").fill("I will do it myself")
    box.get_by_test_id("deny").click()
    # then: the call is shown as denied, and the model was told why
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("All right, I will not calculate.")
    wait_idle(page)
    message = page.get_by_test_id("assistant-message").last
    message.get_by_test_id("steps-toggle").click()
    expect(message.get_by_test_id("tool-status")).to_have_text("denied")
    approval = ToolApproval.objects.get()
    assert (approval.status, approval.decision_reason) == ("denied", "I will do it myself")
    told = "The user denied running tool 'calculator'; it was not run. Their reason: I will do it myself"
    requests = [r["body"] for r in fake_llm.requests if r["path"].endswith("/chat/completions")]
    assert any(m.get("role") == "tool" and m.get("content") == told for body in requests for m in body["messages"])
    # and a reload shows the same
    page.reload()
    message = page.get_by_test_id("assistant-message").last
    message.get_by_test_id("steps-toggle").click()
    expect(message.get_by_test_id("tool-status")).to_have_text("denied")
    expect(page.get_by_test_id("approval")).to_have_count(0)


def test_a_reload_during_the_wait_still_offers_the_decision(pages: Pages) -> None:
    # given: the tab is closed while the call waits
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    send(page, "What is 6*7? " + fake({"tool_calls": [CALC]}, {"text": "It is 42."}))
    expect(page.get_by_test_id("approval")).to_be_visible(timeout=30_000)
    wait_until(lambda: ToolApproval.objects.filter(status="pending").exists())
    page.reload()
    # when: the reopened page answers
    box = page.get_by_test_id("approval")
    expect(box).to_be_visible(timeout=30_000)
    box.get_by_test_id("approve").click()
    # then
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("It is 42.", timeout=30_000)
    wait_idle(page)
    assert ToolApproval.objects.get().status == "approved"


def test_a_replay_keeps_a_decided_call_decided_and_shows_no_text_twice(pages: Pages) -> None:
    # given: the page shows (from the saved rows) a denied call, the next round's text and a
    # call that still waits; the resumed stream replays the turn from its start
    page = pages.open("/copilot", UserFactory(username="alice"))
    page.wait_for_function("() => window.copilotChat !== undefined")
    denial = "The user denied running tool 'calculator'; it was not run."
    shown = [
        {
            "kind": "tool",
            "id": "c1",
            "name": "calculator",
            "input": {"expression": "1"},
            "output": denial,
            "state": "done",
        },
        {"kind": "text", "text": "Then I will ask again."},
        {"kind": "tool", "id": "c2", "name": "calculator", "input": {"expression": "2"}, "state": "running"},
    ]
    replay = [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "calculator"},
        {"type": "tool-input-available", "toolCallId": "c1", "toolName": "calculator", "input": {"expression": "1"}},
        {"type": "tool-approval-request", "approvalId": "a1", "toolCallId": "c1"},
        {"type": "tool-output-denied", "toolCallId": "c1"},
        {"type": "finish-step"},
        {"type": "start-step"},
        {"type": "text-start", "id": "t1"},
        {"type": "text-delta", "id": "t1", "delta": "Then I will ask again."},
        {"type": "text-end", "id": "t1"},
        {"type": "tool-input-start", "toolCallId": "c2", "toolName": "calculator"},
        {"type": "tool-input-available", "toolCallId": "c2", "toolName": "calculator", "input": {"expression": "2"}},
        {"type": "tool-approval-request", "approvalId": "a2", "toolCallId": "c2"},
    ]
    # when
    result = page.evaluate(
        "async (arg) => (await import('/static/chat/replay.js')).stripReplayPrefix(arg.shown, arg.replay)",
        {"shown": shown, "replay": replay},
    )
    # then: only the structure and the waiting call's request are applied
    assert result == [
        {"type": "start", "messageId": "m1"},
        {"type": "start-step"},
        {"type": "finish-step"},
        {"type": "start-step"},
        {"type": "tool-approval-request", "approvalId": "a2", "toolCallId": "c2"},
    ]
