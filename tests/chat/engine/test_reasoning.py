"""Reasoning blocks: their events, their rows, and what goes back to the model."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chat.engine.turn import FALLBACK_TEXT
from chat.models import ChatSession
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    CALC,
    block_ids_are_consistent,
    request_messages,
    run,
    shape,
    stored,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


@pytest.mark.asyncio
async def test_reasoning_then_text(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"reasoning": "Let me think", "text": "Answer"})
    # when
    events = await run(session, message)
    # then
    assert shape(events) == [
        ("start",), ("start-step",),
        ("reasoning-start",), ("reasoning-delta", "Let "), ("reasoning-delta", "me t"), ("reasoning-delta", "hink"),
        ("reasoning-end",),
        ("text-start",), ("text-delta", "Answ"), ("text-delta", "er"), ("text-end",),
        ("finish-step",), ("data-usage",), ("finish",),
    ]  # fmt: skip
    assert block_ids_are_consistent(events)
    assert await stored(session) == [("user", message), ("reasoning", "Let me think"), ("assistant", "Answer")]


@pytest.mark.asyncio
async def test_reasoning_then_tool_call_and_each_block_gets_its_own_row(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    message = fake({"rounds": [{"reasoning": "first", "tool_calls": [CALC]}, {"reasoning": "second", "text": "5"}]})
    # when
    events = await run(session, message)
    # then: reasoning-end comes before the step ends and before any tool event
    assert shape(events)[:10] == [
        ("start",), ("start-step",),
        ("reasoning-start",), ("reasoning-delta", "firs"), ("reasoning-delta", "t"), ("reasoning-end",),
        ("finish-step",),
        ("tool-input-start", "call_calc", "calculator"),
        ("tool-input-available", "call_calc", {"expression": "2+3"}),
        ("tool-output-available", "call_calc", {"expression": "2+3", "result": 5}),
    ]  # fmt: skip
    assert block_ids_are_consistent(events)
    rows = await stored(session)
    assert [row[:2] for row in rows] == [
        ("user", message),
        ("reasoning", "first"),
        ("assistant", ""),
        ("tool", "call_calc"),
        ("reasoning", "second"),
        ("assistant", "5"),
    ]
    assert [row[1] for row in rows if row[0] == "reasoning"] == ["first", "second"]


@pytest.mark.asyncio
async def test_reasoning_only_answer_leaves_an_empty_assistant_row(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"reasoning": "only thoughts", "chunk_size": 20})
    # when
    events = await run(session, message)
    # then
    assert shape(events) == [
        ("start",), ("start-step",), ("reasoning-start",), ("reasoning-delta", "only thoughts"), ("reasoning-end",),
        ("finish-step",), ("data-usage",), ("finish",),
    ]  # fmt: skip
    assert await stored(session) == [("user", message), ("reasoning", "only thoughts"), ("assistant", "")]


@pytest.mark.asyncio
async def test_thinking_only_last_round_after_a_tool_gets_the_fallback_sentence(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    message = fake({"rounds": [{"tool_calls": [CALC]}, {"reasoning": "nothing to add", "chunk_size": 50}]})
    # when
    events = await run(session, message)
    # then
    assert shape(events)[-12:] == [
        ("start-step",), ("reasoning-start",), ("reasoning-delta", "nothing to add"), ("reasoning-end",),
        ("finish-step",),
        ("start-step",), ("text-start",), ("text-delta", FALLBACK_TEXT), ("text-end",), ("finish-step",),
        ("data-usage",), ("finish",),
    ]  # fmt: skip
    assert (await stored(session))[-2:] == [("reasoning", "nothing to add"), ("assistant", FALLBACK_TEXT)]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("_case", "script"),
    [
        ("pure text", {"text": "Hi"}),
        ("text after the last tool", {"rounds": [{"tool_calls": [CALC]}, {"reasoning": "r", "text": "Five."}]}),
    ],
)
async def test_no_fallback_when_there_is_text_after_the_last_tool(
    llm: FakeLLMServer, session: ChatSession, _case: str, script: dict[str, Any]
) -> None:
    # when
    events = await run(session, fake(script))
    # then
    assert all(getattr(e, "delta", None) != FALLBACK_TEXT for e in events)
    assert FALLBACK_TEXT not in [row[1] for row in await stored(session)]


@pytest.mark.asyncio
async def test_malformed_reasoning_payload_is_logged_and_the_stream_goes_on(
    llm: FakeLLMServer, session: ChatSession, caplog: pytest.LogCaptureFixture
) -> None:
    # given: reasoning_details that is not a list
    message = fake(
        {"rounds": [{"reasoning_raw": {"oops": 1}, "text": "Still here", "tool_calls": [CALC]}, {"text": "ok"}]}
    )
    # when
    with caplog.at_level(logging.WARNING):
        events = await run(session, message)
    # then
    assert "Dropping malformed reasoning payload" in caplog.text
    assert "malformed" in caplog.text
    assert [s[0] for s in shape(events)][:9] == [
        "start", "start-step", "text-start", "text-delta", "text-delta", "text-delta", "text-end", "finish-step",
        "tool-input-start",
    ]  # fmt: skip
    assert all(e.type != "reasoning-start" for e in events)


@pytest.mark.asyncio
async def test_reasoning_details_of_unknown_types_add_no_text(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    details = [
        {"type": "reasoning.encrypted", "data": "c2VjcmV0"},
        {"type": "reasoning.future", "text": "hidden"},
        {"text": "untyped "},
        {"type": "reasoning.summary", "summary": "summary "},
        {"type": "reasoning.text", "text": "visible"},
    ]
    message = fake({"reasoning_raw": details, "text": "ok"})
    # when
    events = await run(session, message)
    # then
    assert [s for s in shape(events) if s[0] == "reasoning-delta"] == [("reasoning-delta", "untyped summary visible")]
    assert (await stored(session))[1] == ("reasoning", "untyped summary visible")


@pytest.mark.asyncio
async def test_reasoning_details_go_back_on_the_tool_call_message(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake(
        {
            "rounds": [
                {"reasoning": "plan it", "reasoning_field": "reasoning_details", "tool_calls": [CALC]},
                {"text": "5"},
            ]
        }
    )
    # when
    await run(session, message)
    # then: the fragments are folded into one entry
    assistant = request_messages(llm)[-2]
    assert assistant["reasoning_details"] == [{"type": "reasoning.text", "text": "plan it", "index": 0}]
    assert (await stored(session))[1] == ("reasoning", "plan it")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("_case", "model", "budget", "mode", "expected"),
    [
        ("anthropic route", "anthropic/claude-sonnet-4-6", 8192, None, {"max_tokens": 8192}),
        ("claude in the name", "vendor/claude-x", 2048, "extended_thinking", {"max_tokens": 2048}),
        ("budget 0 is the kill switch", "anthropic/claude-sonnet-4-6", 0, None, None),
        ("negative budget", "anthropic/claude-sonnet-4-6", -1, None, None),
        ("fast mode", "anthropic/claude-sonnet-4-6", 8192, "fast", None),
        ("openai model", "openai/gpt-4o", 8192, None, None),
        ("google model", "google/gemini-2.5-pro", 8192, None, None),
    ],
)
async def test_reasoning_parameter_only_for_anthropic_routes_with_a_budget(
    llm: FakeLLMServer,
    session: ChatSession,
    settings: Any,
    _case: str,
    model: str,
    budget: int,
    mode: str | None,
    expected: dict[str, int] | None,
) -> None:
    # given
    settings.COPILOT_MODEL = model
    settings.COPILOT_MAX_THINKING_TOKENS = budget
    # when
    await run(session, fake({"text": "ok"}), mode=mode)
    # then
    body = llm.requests[-1]["body"]
    assert body.get("reasoning") == expected
    assert body["usage"] == {"include": True}
    assert body["stream_options"] == {"include_usage": True}
    assert body["stream"] is True
