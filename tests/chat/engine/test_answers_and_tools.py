"""A turn's answer and its tool rounds: the exact events a client receives and the rows stored."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest

from chat.engine.events import ToolOutputAvailableEvent
from chat.models import ChatSession, TurnUsage
from chat.tools.builtin.calculator import Calculator
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    CALC,
    CLOCK,
    block_ids_are_consistent,
    error_row,
    request_messages,
    run,
    shape,
    stored,
    turn_usage,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


@pytest.mark.asyncio
async def test_plain_answer(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"text": "Hello there", "chunk_size": 5})
    # when
    events = await run(session, message)
    # then
    assert shape(events) == [
        ("start",), ("start-step",), ("text-start",),
        ("text-delta", "Hello"), ("text-delta", " ther"), ("text-delta", "e"),
        ("text-end",), ("finish-step",), ("data-usage",), ("finish",),
    ]  # fmt: skip
    assert block_ids_are_consistent(events)
    assert await stored(session) == [("user", message), ("assistant", "Hello there")]
    usage = await turn_usage(session)
    assert usage.outcome == TurnUsage.Outcome.COMPLETED
    assert usage.finished_at is not None


@pytest.mark.asyncio
async def test_tool_round_trip(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"rounds": [{"tool_calls": [CALC]}, {"text": "It is 5.", "chunk_size": 10}]})
    # when
    events = await run(session, message)
    # then
    assert shape(events) == [
        ("start",), ("start-step",), ("finish-step",),
        ("tool-input-start", "call_calc", "calculator"),
        ("tool-input-available", "call_calc", {"expression": "2+3"}),
        ("tool-output-available", "call_calc", {"expression": "2+3", "result": 5}),
        ("start-step",), ("text-start",), ("text-delta", "It is 5."), ("text-end",), ("finish-step",),
        ("data-usage",), ("finish",),
    ]  # fmt: skip
    assert await stored(session) == [
        ("user", message),
        ("assistant", "", [("call_calc", "calculator", '{"expression": "2+3"}')]),
        ("tool", "call_calc", '{"expression": "2+3", "result": 5}'),
        ("assistant", "It is 5."),
    ]
    second = request_messages(llm)
    assert second[-2:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_calc",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "2+3"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_calc", "content": '{"expression": "2+3", "result": 5}'},
    ]


@pytest.mark.asyncio
async def test_two_tools_in_one_round_run_in_order(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"rounds": [{"text": "Checking.", "tool_calls": [CALC, CLOCK]}, {"text": "Done."}]})
    # when
    events = await run(session, message)
    # then
    assert [s[:2] for s in shape(events)] == [
        ("start",), ("start-step",), ("text-start",),
        ("text-delta", "Chec"), ("text-delta", "king"), ("text-delta", "."), ("text-end",), ("finish-step",),
        ("tool-input-start", "call_calc"), ("tool-input-available", "call_calc"),
        ("tool-output-available", "call_calc"),
        ("tool-input-start", "call_clock"), ("tool-input-available", "call_clock"),
        ("tool-output-available", "call_clock"),
        ("start-step",), ("text-start",), ("text-delta", "Done"), ("text-delta", "."), ("text-end",), ("finish-step",),
        ("data-usage",), ("finish",),
    ]  # fmt: skip
    rows = await stored(session)
    assert [row[:2] for row in rows] == [
        ("user", message),
        ("assistant", "Checking."),
        ("tool", "call_calc"),
        ("tool", "call_clock"),
        ("assistant", "Done."),
    ]
    assert rows[1][2] == [
        ("call_calc", "calculator", '{"expression": "2+3"}'),
        ("call_clock", "get_current_time", "{}"),
    ]
    assert json.loads(rows[3][2])["timezone"] == "UTC"


@pytest.mark.asyncio
async def test_invalid_tool_json_is_a_failed_output_and_the_loop_continues(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    bad = {"name": "calculator", "arguments": '{"expression": ', "id": "call_bad"}
    message = fake({"rounds": [{"tool_calls": [bad]}, {"text": "Sorry."}]})
    # when
    events = await run(session, message)
    # then
    expected = "Invalid JSON arguments for tool 'calculator': Expecting value: line 1 column 16 (char 15)"
    assert shape(events) == [
        ("start",), ("start-step",), ("finish-step",),
        ("tool-output-available", "call_bad", expected),
        ("start-step",), ("text-start",), ("text-delta", "Sorr"), ("text-delta", "y."), ("text-end",),
        ("finish-step",), ("data-usage",), ("finish",),
    ]  # fmt: skip
    output = next(e for e in events if isinstance(e, ToolOutputAvailableEvent))
    assert output.success is False
    assert await stored(session) == [
        ("user", message),
        ("assistant", "", [("call_bad", "calculator", '{"expression": ')]),
        ("tool", "call_bad", expected),
        ("assistant", "Sorry."),
    ]


@pytest.mark.asyncio
async def test_a_raising_tool_is_a_failed_output_and_the_turn_continues(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    message = fake({"rounds": [{"tool_calls": [CALC]}, {"text": "Oops."}]})
    # when
    with mock.patch.object(Calculator, "run", side_effect=RuntimeError("boom")):
        events = await run(session, message)
    # then
    output = next(e for e in events if isinstance(e, ToolOutputAvailableEvent))
    assert (output.output, output.success, output.tool_name) == ("Tool execution error: boom", False, "calculator")
    assert output.to_wire() == {
        "type": "tool-output-available",
        "toolCallId": "call_calc",
        "output": "Tool execution error: boom",
    }
    assert shape(events)[-3:] == [("finish-step",), ("data-usage",), ("finish",)]
    assert (await stored(session))[2:] == [("tool", "call_calc", "Tool execution error: boom"), ("assistant", "Oops.")]


@pytest.mark.asyncio
async def test_thirty_rounds_of_tool_calls_end_with_the_round_limit_error(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given: the model calls a tool forever (the last round repeats)
    message = fake({"rounds": [{"tool_calls": [{"name": "get_current_time", "arguments": {}}], "usage": None}]})
    # when
    events = await run(session, message)
    # then
    text = "Exceeded 30 tool-call rounds without a final response."
    assert sum(1 for e in events if e.type == "start-step") == 30
    assert sum(1 for e in events if e.type == "tool-output-available") == 30
    assert shape(events)[-4:] == [("data-usage",), ("data-error", "tool_round_limit"), ("error", text), ("finish",)]
    rows = await stored(session)
    assert len(rows) == 1 + 30 * 2 + 1
    assert rows[-1] == error_row(text)
    assert len(llm.requests) == 30
    usage = await turn_usage(session)
    assert (usage.outcome, usage.error) == (TurnUsage.Outcome.FAILED, text)


@pytest.mark.asyncio
async def test_tool_output_over_the_limit_is_truncated_on_the_wire_and_in_the_row(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    async def huge(self: Any, ctx: Any, **arguments: Any) -> str:
        return "x" * 150_000

    message = fake({"rounds": [{"tool_calls": [CALC]}, {"text": "ok"}]})
    # when
    with mock.patch.object(Calculator, "run", huge):
        events = await run(session, message)
    # then
    output = next(e for e in events if isinstance(e, ToolOutputAvailableEvent)).output
    note = "\n\n[Output truncated: 150000 characters, showing the first 99935.]"
    assert output == "x" * 99_935 + note
    assert len(output) == 100_000
    assert (await stored(session))[2] == ("tool", "call_calc", output)
