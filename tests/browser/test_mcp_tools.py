"""MCP tool calls on the chat page: shown like the built-ins, with the server's name, output inert."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from chat.mcp.services import mcp_server_create
from copilot_site.testing.mcp_server import McpTestServer
from tests.browser.conftest import Pages, fake, screenshot
from tests.factories import UserFactory

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAYLOAD = '<img src="x" onerror="window.__xss=1"><script>window.__xss=2</script>'


@pytest.fixture
def mcp_http() -> Iterator[McpTestServer]:
    with McpTestServer() as server:
        yield server


def test_mcp_tool_row_names_its_server_and_shows_untrusted_output_as_text(
    pages: Pages, mcp_http: McpTestServer
) -> None:
    # given
    mcp_server_create(name="docs", url=mcp_http.url)
    alice = UserFactory(username="alice")
    page = pages.open("/copilot", alice)
    script = fake(
        {"tool_calls": [{"name": "docs__echo", "arguments": {"text": PAYLOAD}}]},
        {"text": "Echoed it."},
    )
    # when
    box = page.get_by_test_id("composer-input")
    box.fill("echo this " + script)
    box.press("Enter")
    expect(page.get_by_test_id("assistant-text").last).to_contain_text("Echoed it.", timeout=30_000)
    expect(page.locator("[data-chat]")).to_have_attribute("data-state", "idle", timeout=30_000)
    # then: the row reads "echo · docs" and its output is plain text
    message = page.get_by_test_id("assistant-message").last
    steps = message.get_by_test_id("steps-toggle")
    if steps.count():
        steps.click()
    tool = message.get_by_test_id("tool-row")
    expect(tool).to_have_attribute("data-tool-name", "docs__echo")
    expect(tool.locator(".tool-name")).to_have_text("echo")
    expect(tool.get_by_test_id("tool-server")).to_have_text("· docs")
    expect(tool.get_by_test_id("tool-status")).to_have_text("completed")
    tool.get_by_role("button").click()
    expect(tool.locator(".tool-body")).to_contain_text("echo: " + PAYLOAD)
    assert page.evaluate("() => window.__xss === undefined")
    assert page.get_by_test_id("message-list").locator("script, img, [onerror]").count() == 0
    screenshot(page, "chat-mcp-tool")


def test_tool_label_splits_server_and_tool(pages: Pages) -> None:
    page = pages.open("/copilot", UserFactory(username="bob"))
    labels: Any = page.evaluate(
        "async () => { const m = await import('/static/chat/mcp.js');"
        " return ['docs__search', 'calculator', '__x', 'a__'].map(m.toolLabel); }"
    )
    assert labels == [
        {"tool": "search", "server": "docs"},
        {"tool": "calculator", "server": None},
        {"tool": "__x", "server": None},
        {"tool": "a__", "server": None},
    ]
