"""The Anthropic provider through the engine: thinking, tools and text; cost; errors mid-stream."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from chat.models import ChatSession
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    CALC,
    run,
    shape,
    stored,
    turn_usage,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


@pytest.mark.asyncio
async def test_anthropic_provider_streams_thinking_tools_and_text(
    llm: FakeLLMServer, session: ChatSession, settings: Any
) -> None:
    # given
    settings.COPILOT_LLM_PROVIDER = "anthropic"
    settings.COPILOT_MODEL_PRICES = {"anthropic/claude-sonnet-4-6": {"input": 3, "output": 15}}
    message = fake(
        {
            "rounds": [
                {"reasoning": "plan", "tool_calls": [CALC], "usage": {"prompt_tokens": 100, "completion_tokens": 10}},
                {"reasoning": "done", "text": "It is 5.", "usage": {"prompt_tokens": 200, "completion_tokens": 20}},
            ]
        }
    )
    # when
    with mock.patch("ratelimits.services.usage_record") as record:
        events = await run(session, message)
    # then
    assert shape(events) == [
        ("start",), ("start-step",), ("reasoning-start",), ("reasoning-delta", "plan"), ("reasoning-end",),
        ("finish-step",),
        ("tool-input-start", "call_calc", "calculator"),
        ("tool-input-available", "call_calc", {"expression": "2+3"}),
        ("tool-output-available", "call_calc", {"expression": "2+3", "result": 5}),
        ("start-step",), ("reasoning-start",), ("reasoning-delta", "done"), ("reasoning-end",),
        ("text-start",), ("text-delta", "It i"), ("text-delta", "s 5."), ("text-end",), ("finish-step",),
        ("data-usage",), ("finish",),
    ]  # fmt: skip
    assert await stored(session) == [
        ("user", message),
        ("reasoning", "plan"),
        ("assistant", "", [("call_calc", "calculator", '{"expression": "2+3"}')]),
        ("tool", "call_calc", '{"expression": "2+3", "result": 5}'),
        ("reasoning", "done"),
        ("assistant", "It is 5."),
    ]
    first, second = (r["body"] for r in llm.requests)
    assert all(r["path"] == "/v1/messages" for r in llm.requests)
    assert first["model"] == "claude-sonnet-4-6"
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert first["max_tokens"] == 16000
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert second["messages"][-2]["content"][0]["type"] == "thinking"  # signed thinking goes back with the call
    assert second["messages"][-2]["content"][1] == {
        "type": "tool_use", "id": "call_calc", "name": "calculator", "input": {"expression": "2+3"},
    }  # fmt: skip
    assert second["messages"][-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_calc", "content": '{"expression": "2+3", "result": 5}'}
    ]
    row = await turn_usage(session)
    assert (row.provider, row.prompt_tokens, row.completion_tokens) == ("anthropic", 300, 30)
    assert (row.cost_microdollars, row.cost_source) == (300 * 3 + 30 * 15, "estimated")
    record.assert_called_once_with(user=mock.ANY, microdollars=1350)


@pytest.mark.asyncio
async def test_anthropic_provider_without_a_price_has_no_cost(
    llm: FakeLLMServer, session: ChatSession, settings: Any
) -> None:
    # given
    settings.COPILOT_LLM_PROVIDER = "anthropic"
    # when
    with mock.patch("ratelimits.services.usage_record") as record:
        await run(session, fake({"text": "hi", "usage": {"prompt_tokens": 50, "completion_tokens": 5}}))
    # then
    row = await turn_usage(session)
    assert (row.prompt_tokens, row.cost_microdollars, row.cost_source) == (50, None, "missing")
    record.assert_not_called()


@pytest.mark.asyncio
async def test_anthropic_provider_error_mid_stream(llm: FakeLLMServer, session: ChatSession, settings: Any) -> None:
    # given
    settings.COPILOT_LLM_PROVIDER = "anthropic"
    message = fake({"text": "abcdefgh", "error_after_chunks": 1})
    # when
    events = await run(session, message)
    # then
    assert [s[0] for s in shape(events)] == [
        "start", "start-step", "text-start", "text-delta", "text-end", "finish-step", "data-usage", "data-error",
        "error", "finish",
    ]  # fmt: skip
    assert (await stored(session))[1] == ("assistant", "abcd")
