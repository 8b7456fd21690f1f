"""What the model is sent: the page context, the resolved model, prompt-cache markers."""

from __future__ import annotations

from typing import Any

import pytest

from chat.models import ChatSession
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    CALC,
    request_messages,
    run,
    stored,
    turn_usage,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


@pytest.mark.asyncio
async def test_page_context_goes_to_the_llm_copy_only(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"text": "ok"})
    # when
    await run(session, message, page_context={"url": "https://example.com/a", "content": "Page body", "x": 1})
    # then
    assert (
        request_messages(llm)[-1]["content"]
        == f"{message}\n\n[Page URL: https://example.com/a]\n\n[Page content]\nPage body"
    )
    assert (await stored(session))[0] == ("user", message)


@pytest.mark.asyncio
async def test_advanced_model_is_resolved_from_settings(
    llm: FakeLLMServer, session: ChatSession, settings: Any
) -> None:
    # given
    settings.COPILOT_ADVANCED_MODEL = "anthropic/claude-opus-4-7"
    # when
    await run(session, fake({"text": "ok"}), model="advanced")
    # then
    assert llm.requests[-1]["body"]["model"] == "anthropic/claude-opus-4-7"
    assert (await turn_usage(session)).model == "anthropic/claude-opus-4-7"


@pytest.mark.asyncio
async def test_prompt_caching_marks_the_system_prompt_and_the_last_tool_on_anthropic_routes(
    llm: FakeLLMServer, session: ChatSession, settings: Any
) -> None:
    # given
    settings.COPILOT_PROMPT_CACHE_TTL = "1h"
    # when
    await run(session, fake({"rounds": [{"tool_calls": [CALC]}, {"text": "ok"}]}))
    # then
    for request in llm.requests:
        body = request["body"]
        assert request["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
        system = body["messages"][0]
        assert system["role"] == "system"
        assert system["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
        assert body["tools"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
        assert all("cache_control" not in tool for tool in body["tools"][:-1])
        assert "get_current_time" not in system["content"][0]["text"]  # no tool docs in the prompt
    from chat.tools import enabled_tools

    assert all("cache_control" not in tool.schema() for tool in enabled_tools())


@pytest.mark.asyncio
async def test_no_cache_markers_for_other_routes(llm: FakeLLMServer, session: ChatSession, settings: Any) -> None:
    # given
    settings.COPILOT_MODEL = "openai/gpt-4o"
    # when
    await run(session, fake({"text": "ok"}))
    # then
    request = llm.requests[-1]
    assert "anthropic-beta" not in request["headers"]
    assert isinstance(request["body"]["messages"][0]["content"], str)
    assert all("cache_control" not in tool for tool in request["body"]["tools"])
