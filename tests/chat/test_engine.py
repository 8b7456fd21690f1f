"""The turn engine against the scripted LLM server over real HTTP, with the real database.

Each test asserts the exact event sequence a client receives and the exact rows stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async

from chat.engine.accumulator import EventAccumulator
from chat.engine.events import StreamEvent, ToolOutputAvailableEvent
from chat.engine.followups import PendingFollowUp
from chat.engine.turn import FALLBACK_TEXT, run_turn
from chat.models import STOPPED_BY_USER_MARKER, ChatMessage, ChatSession, TurnUsage
from chat.services import message_append_user
from chat.tools.builtin.calculator import Calculator
from chat.tools.builtin.clock import GetCurrentTime
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]

ERROR_PREFIX = "[__COPILOT_SYSTEM__] Error: "
CALC = {"name": "calculator", "arguments": {"expression": "2+3"}, "id": "call_calc"}
CLOCK = {"name": "get_current_time", "arguments": {}, "id": "call_clock"}


@pytest.fixture
def session(alice: Any) -> ChatSession:
    return ChatSession.objects.create(user=alice, title="Existing title")


def start_turn(session: ChatSession, **kwargs: Any) -> Any:
    return run_turn(
        session_id=session.pk, user_id=session.user_id, turn_id=kwargs.pop("turn_id", uuid.uuid4()), **kwargs
    )


async def run(session: ChatSession, message: str | None, **kwargs: Any) -> list[StreamEvent]:
    if message is not None:
        await sync_to_async(message_append_user)(session_id=session.pk, content=message)
    return [event async for event in start_turn(session, **kwargs)]


def shape(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    """Events without their random ids: (type, the fields a test cares about)."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        wire = event.to_wire()
        kind = wire["type"]
        if kind in ("text-delta", "reasoning-delta"):
            out.append((kind, wire["delta"]))
        elif kind == "tool-input-start":
            out.append((kind, wire["toolCallId"], wire["toolName"]))
        elif kind == "tool-input-available":
            out.append((kind, wire["toolCallId"], wire["input"]))
        elif kind == "tool-output-available":
            out.append((kind, wire["toolCallId"], wire["output"]))
        elif kind == "error":
            out.append((kind, wire["errorText"]))
        elif kind == "data-error":
            out.append((kind, wire["data"]["code"]))
        else:
            out.append((kind,))
    return out


def block_ids_are_consistent(events: list[StreamEvent]) -> bool:
    """Every delta belongs to the block opened before it, and every block gets its own id."""
    seen: set[str] = set()
    open_ids: set[str] = set()
    for event in events:
        wire = event.to_wire()
        kind = wire["type"]
        if kind in ("text-start", "reasoning-start"):
            if wire["id"] in seen:
                return False
            seen.add(wire["id"])
            open_ids.add(wire["id"])
        elif kind in ("text-delta", "reasoning-delta") and wire["id"] not in open_ids:
            return False
        elif kind in ("text-end", "reasoning-end"):
            if wire["id"] not in open_ids:
                return False
            open_ids.discard(wire["id"])
    return not open_ids


@sync_to_async
def stored(session: ChatSession) -> list[tuple[Any, ...]]:
    rows = ChatMessage.objects.filter(session=session).order_by("sequence")
    out: list[tuple[Any, ...]] = []
    for row in rows:
        if row.role == "tool":
            out.append(("tool", row.tool_call_id, row.content))
        elif row.tool_calls:
            calls = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in row.tool_calls]
            out.append((row.role, row.content, calls))
        else:
            out.append((row.role, row.content))
    return out


@sync_to_async
def sequences(session: ChatSession) -> list[int]:
    return list(ChatMessage.objects.filter(session=session).order_by("sequence").values_list("sequence", flat=True))


@sync_to_async
def turn_usage(session: ChatSession) -> TurnUsage:
    return TurnUsage.objects.get(session=session)


def request_messages(llm: FakeLLMServer, index: int = -1) -> list[dict[str, Any]]:
    completions = [r for r in llm.requests if r["path"].endswith("/chat/completions")]
    messages: list[dict[str, Any]] = completions[index]["body"]["messages"]
    return messages


# ---------------------------------------------------------------- answers


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
    assert rows[-1] == ("assistant", ERROR_PREFIX + text)
    assert len(llm.requests) == 30
    usage = await turn_usage(session)
    assert (usage.outcome, usage.error) == (TurnUsage.Outcome.FAILED, text)


# ---------------------------------------------------------------- reasoning


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


# ---------------------------------------------------------------- errors and stops


@pytest.mark.asyncio
async def test_provider_error_after_reasoning_closes_the_block_before_the_step(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    message = fake({"reasoning": "abcdefgh", "error_after_chunks": 1})
    # when
    events = await run(session, message)
    # then
    assert shape(events) == [
        ("start",), ("start-step",), ("reasoning-start",), ("reasoning-delta", "abcd"), ("reasoning-end",),
        ("finish-step",), ("data-usage",), ("data-error", "llm_error"), ("error", "Upstream provider error"),
        ("finish",),
    ]  # fmt: skip
    assert await stored(session) == [
        ("user", message),
        ("reasoning", "abcd"),
        ("assistant", ERROR_PREFIX + "Upstream provider error"),
    ]


@pytest.mark.asyncio
async def test_provider_error_mid_text_persists_the_partial_answer(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"text": "Partial answer here", "error_after_chunks": 2})
    # when
    events = await run(session, message)
    # then
    assert shape(events) == [
        ("start",), ("start-step",), ("text-start",), ("text-delta", "Part"), ("text-delta", "ial "), ("text-end",),
        ("finish-step",), ("data-usage",), ("data-error", "llm_error"), ("error", "Upstream provider error"),
        ("finish",),
    ]  # fmt: skip
    assert await stored(session) == [
        ("user", message),
        ("assistant", "Partial "),
        ("assistant", ERROR_PREFIX + "Upstream provider error"),
    ]
    usage = await turn_usage(session)
    assert (usage.outcome, usage.tokens_estimated, usage.completion_tokens) == ("failed", True, 2)


@pytest.mark.asyncio
async def test_a_dropped_connection_mid_stream_is_an_error_too(llm: FakeLLMServer, session: ChatSession) -> None:
    # when
    events = await run(session, fake({"text": "abcdefgh", "error_after_chunks": 1, "error_mode": "disconnect"}))
    # then
    assert [s[0] for s in shape(events)][-5:] == ["finish-step", "data-usage", "data-error", "error", "finish"]
    assert (await stored(session))[1:] == [("assistant", "abcd"), ("assistant", mock.ANY)]
    assert (await stored(session))[2][1].startswith(ERROR_PREFIX)


@pytest.mark.asyncio
async def test_aclose_mid_stream_persists_the_partial_answer_and_the_stop_marker(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    message = fake({"reasoning": "thinking", "text": "abcdefghijkl", "chunk_size": 2, "delay_ms": 20})
    await sync_to_async(message_append_user)(session_id=session.pk, content=message)
    stream = start_turn(session)
    received: list[StreamEvent] = []
    # when: the consumer stops after two text deltas (a user stop) and closes the stream
    async for event in stream:
        received.append(event)
        if sum(1 for e in received if e.type == "text-delta") == 2:
            break
    await stream.aclose()
    # then
    assert [s[0] for s in shape(received)][-4:] == ["reasoning-end", "text-start", "text-delta", "text-delta"]
    folded = EventAccumulator().add_all(received)
    assert [e.type for e in folded.closing_events()] == ["text-end", "finish-step"]
    assert await stored(session) == [
        ("user", message),
        ("reasoning", "thinking"),
        ("assistant", "abcd"),
        ("assistant", STOPPED_BY_USER_MARKER),
    ]
    usage = await turn_usage(session)
    assert usage.outcome == TurnUsage.Outcome.CANCELLED
    assert usage.finished_at is not None


@pytest.mark.asyncio
async def test_aclose_mid_reasoning_keeps_the_partial_reasoning_row(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"reasoning": "abcdefgh", "chunk_size": 2, "delay_ms": 20, "text": "never"})
    await sync_to_async(message_append_user)(session_id=session.pk, content=message)
    stream = start_turn(session)
    # when
    async for event in stream:
        if event.type == "reasoning-delta":
            break
    await stream.aclose()
    # then
    assert await stored(session) == [("user", message), ("reasoning", "ab"), ("assistant", STOPPED_BY_USER_MARKER)]


@pytest.mark.asyncio
async def test_closing_after_cleanup_raises_nothing_and_usage_comes_after_cleanup(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    message = fake({"text": "Done", "usage": {"prompt_tokens": 10, "completion_tokens": 2, "cost": 0.001}})
    await sync_to_async(message_append_user)(session_id=session.pk, content=message)
    stream = start_turn(session)
    # when
    async for event in stream:
        if event.type == "data-usage":
            # then: by the time usage is yielded, cleanup has persisted everything
            assert event.to_wire()["data"] == {
                "promptTokens": 10, "completionTokens": 2, "totalTokens": 12, "cacheReadTokens": 0,
                "cacheCreationTokens": 0,
            }  # fmt: skip
            usage = await turn_usage(session)
            assert usage.finished_at is not None
            assert await stored(session) == [("user", message), ("assistant", "Done")]
            break
    await stream.aclose()  # a client disconnect during the last events: no RuntimeError
    assert await stored(session) == [("user", message), ("assistant", "Done")]


@pytest.mark.asyncio
async def test_cancel_event_stops_a_running_tool_and_ends_the_turn_cleanly(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given: a tool that would run for a minute
    cancel = asyncio.Event()

    async def slow(self: Any, ctx: Any, **arguments: Any) -> str:
        await asyncio.sleep(60)
        return "never"

    message = fake({"rounds": [{"tool_calls": [CLOCK]}, {"text": "unused"}]})
    await sync_to_async(message_append_user)(session_id=session.pk, content=message)
    received: list[StreamEvent] = []
    # when
    with mock.patch.object(GetCurrentTime, "run", slow):
        async for event in start_turn(session, cancel=cancel):
            received.append(event)
            if event.type == "tool-input-available":
                asyncio.get_running_loop().call_later(0.1, cancel.set)
    # then
    text = "Tool 'get_current_time' was cancelled because the turn was stopped."
    assert shape(received)[-4:] == [
        ("tool-input-available", "call_clock", {}), ("tool-output-available", "call_clock", text),
        ("data-usage",), ("finish",),
    ]  # fmt: skip
    assert (await stored(session))[1:] == [
        ("assistant", "", [("call_clock", "get_current_time", "{}")]),
        ("tool", "call_clock", text),
        ("assistant", STOPPED_BY_USER_MARKER),
    ]
    assert len(llm.requests) == 1


@pytest.mark.asyncio
async def test_stop_mid_tool_then_next_message_prunes_the_orphans(
    llm: FakeLLMServer, session: ChatSession, caplog: pytest.LogCaptureFixture
) -> None:
    # given: turn 1 (the demo model calls get_current_time) is cancelled while the tool runs
    started = asyncio.Event()

    async def slow(self: Any, ctx: Any, **arguments: Any) -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    await sync_to_async(message_append_user)(session_id=session.pk, content="what time is it?")

    async def consume() -> None:
        async for _ in start_turn(session):
            pass

    with mock.patch.object(GetCurrentTime, "run", slow):
        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    first_turn = await stored(session)
    assert [row[:2] for row in first_turn] == [
        ("user", "what time is it?"),
        ("reasoning", mock.ANY),
        ("assistant", ""),
        ("assistant", STOPPED_BY_USER_MARKER),
    ]
    # when: the next message starts a turn
    second = fake({"text": "Fresh start"})
    with caplog.at_level(logging.INFO, logger="chat.engine.context"):
        await run(session, second)
    # then: the orphan call and the marker are gone from the context, not from the DB
    assert "Dropped 2 trailing orphan tool-use/stop row(s) before starting new turn" in caplog.text
    sent = request_messages(llm)
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[1]["content"] == f"what time is it?\n\n{second}"
    rows = await stored(session)
    assert rows[4:] == [("user", second), ("assistant", "Fresh start")]
    assert await sequences(session) == [0, 1, 2, 3, 4, 5]
    # and when: a later turn, with the orphan now mid-history
    third = fake({"text": "Still fine"})
    await run(session, third)
    # then: the orphan call never reaches the model
    sent = request_messages(llm)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert all("tool_calls" not in m for m in sent)
    assert STOPPED_BY_USER_MARKER not in json.dumps(sent)


@pytest.mark.asyncio
async def test_reasoning_and_system_rows_never_reach_a_later_turn(llm: FakeLLMServer, session: ChatSession) -> None:
    # given: an earlier turn with reasoning, then a failed turn (error row) and a stopped one
    @sync_to_async
    def seed() -> None:
        contents = [
            ("user", "q1"),
            ("reasoning", "secret thoughts"),
            ("assistant", "First answer"),
            ("user", "q2"),
            ("assistant", ERROR_PREFIX + "boom"),
            ("user", "q3"),
            ("assistant", STOPPED_BY_USER_MARKER),
        ]
        for sequence, (role, content) in enumerate(contents):
            ChatMessage.objects.create(session=session, sequence=sequence, role=role, content=content)

    await seed()
    message = fake({"text": "Third"})
    # when
    await run(session, message)
    # then
    assert request_messages(llm)[1:] == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": f"q2\n\nq3\n\n{message}"},
    ]


# ---------------------------------------------------------------- usage and cost


@pytest.mark.asyncio
async def test_usage_and_cost_reported_by_the_provider(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 40, "cost": 0.0123}
    message = fake({"rounds": [{"tool_calls": [CALC], "usage": usage}, {"text": "ok", "usage": usage}]})
    # when
    with mock.patch("ratelimits.services.record_cost_usage") as record:
        events = await run(session, message)
    # then
    assert events[-2].to_wire() == {
        "type": "data-usage",
        "data": {"promptTokens": 200, "completionTokens": 40, "totalTokens": 240, "cacheReadTokens": 80,
                 "cacheCreationTokens": 0},
    }  # fmt: skip
    row = await turn_usage(session)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens, row.cache_read_tokens) == (200, 40, 240, 80)
    assert (row.cost_microdollars, row.cost_source, row.tokens_estimated) == (24600, "reported", False)
    record.assert_called_once_with(user=mock.ANY, microdollars=24600)
    assert record.call_args.kwargs["user"].pk == session.user_id
    refreshed = await sync_to_async(ChatSession.objects.get)(pk=session.pk)
    assert (refreshed.total_prompt_tokens, refreshed.total_completion_tokens) == (200, 40)
    assert (refreshed.total_cache_read_tokens, refreshed.total_cost_microdollars) == (80, 24600)


@pytest.mark.asyncio
async def test_cost_from_the_price_table_when_the_provider_reports_none(
    llm: FakeLLMServer, session: ChatSession, settings: Any
) -> None:
    # given
    settings.COPILOT_MODEL_PRICES = {
        "anthropic/claude-sonnet-4-6": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}
    }
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "cached_tokens": 200, "cost": None}
    # when
    with mock.patch("ratelimits.services.record_cost_usage") as record:
        await run(session, fake({"text": "ok", "usage": usage}))
    # then: 800 × 3 + 200 × 0.3 + 100 × 15 = 3960 microdollars
    row = await turn_usage(session)
    assert (row.cost_microdollars, row.cost_source) == (3960, "estimated")
    record.assert_called_once_with(user=mock.ANY, microdollars=3960)


@pytest.mark.asyncio
async def test_missing_cost_is_logged_and_not_recorded(
    llm: FakeLLMServer, session: ChatSession, caplog: pytest.LogCaptureFixture
) -> None:
    # when
    with mock.patch("ratelimits.services.record_cost_usage") as record, caplog.at_level(logging.ERROR):
        await run(session, fake({"text": "ok", "usage": {"prompt_tokens": 10, "completion_tokens": 1, "cost": None}}))
    # then
    assert "cost missing — rate limit skipped" in caplog.text
    record.assert_not_called()
    row = await turn_usage(session)
    assert (row.prompt_tokens, row.cost_microdollars, row.cost_source) == (10, None, "missing")


@pytest.mark.asyncio
async def test_no_usage_at_all_is_estimated_with_tiktoken_and_never_charged(
    llm: FakeLLMServer, session: ChatSession, caplog: pytest.LogCaptureFixture
) -> None:
    # when
    with mock.patch("ratelimits.services.record_cost_usage") as record, caplog.at_level(logging.ERROR):
        events = await run(session, fake({"text": "hello world", "usage": None}))
    # then
    assert "reported no usage: cost missing — rate limit skipped" in caplog.text
    row = await turn_usage(session)
    assert row.tokens_estimated is True
    assert row.completion_tokens == 2  # "hello world"
    assert row.prompt_tokens > 100  # the system prompt and the tool schemas
    assert (row.cost_microdollars, row.cost_source) == (None, "missing")
    record.assert_not_called()
    assert events[-2].to_wire()["data"]["completionTokens"] == 2


@pytest.mark.asyncio
async def test_failed_turn_without_output_charges_nothing(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    message = fake({"http_status": 500, "error_message": "upstream down"})
    # when
    with mock.patch("ratelimits.services.record_cost_usage") as record:
        events = await run(session, message)
    # then
    error = "Error code: 500 - {'error': {'message': 'upstream down', 'type': 'server_error', 'code': 500}}"
    assert shape(events) == [
        ("start",), ("start-step",), ("finish-step",), ("data-error", "llm_error"), ("error", error), ("finish",),
    ]  # fmt: skip
    record.assert_not_called()
    row = await turn_usage(session)
    assert (row.outcome, row.total_tokens, row.cost_microdollars, row.tokens_estimated) == ("failed", 0, None, False)
    assert await stored(session) == [("user", message), ("assistant", ERROR_PREFIX + error)]


# ---------------------------------------------------------------- protocol details


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


@pytest.mark.asyncio
async def test_start_and_error_frames_carry_only_their_spec_fields(llm: FakeLLMServer, session: ChatSession) -> None:
    # when
    events = await run(session, fake({"http_status": 500}))
    # then
    start, error = events[0].to_wire(), events[-2].to_wire()
    assert set(start) == {"type", "messageId"}
    assert uuid.UUID(start["messageId"])
    assert set(error) == {"type", "errorText"}


@pytest.mark.asyncio
async def test_another_active_stream_refuses_the_turn(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    lock = mock.AsyncMock()
    lock.acquire.return_value = False
    await sync_to_async(message_append_user)(session_id=session.pk, content="hi")
    # when
    events = [e async for e in start_turn(session, stream_lock=lock)]
    # then
    assert shape(events) == [
        ("data-error", "stream_locked"),
        ("error", "Another stream is already active for this session. Please wait or stop it."),
        ("finish",),
    ]
    lock.release.assert_not_called()
    assert llm.requests == []


@pytest.mark.asyncio
async def test_the_stream_lock_is_released_on_every_exit(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    lock = mock.AsyncMock()
    lock.acquire.return_value = True
    await sync_to_async(message_append_user)(session_id=session.pk, content=fake({"text": "abcdefgh", "delay_ms": 10}))
    stream = start_turn(session, stream_lock=lock)
    # when: closed early
    async for _ in stream:
        break
    await stream.aclose()
    # then
    lock.release.assert_awaited_once()


@pytest.mark.asyncio
async def test_a_foreign_session_is_not_found(llm: FakeLLMServer, session: ChatSession, bob: Any) -> None:
    # when
    events = [e async for e in run_turn(session_id=session.pk, user_id=bob.pk, turn_id=uuid.uuid4())]
    # then
    assert shape(events) == [("data-error", "llm_error"), ("error", f"Session {session.pk} not found."), ("finish",)]
    assert await stored(session) == []


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


# ---------------------------------------------------------------- follow-ups


@pytest.mark.asyncio
async def test_follow_up_drained_at_a_round_boundary_is_persisted_after_the_tool_rows(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given: nothing pending at turn start, one follow-up after the first tool round
    batches: list[list[PendingFollowUp]] = [[], [PendingFollowUp(content="also in euros", file_ids=("f1",))], []]

    async def drain() -> list[PendingFollowUp]:
        return batches.pop(0) if batches else []

    message = fake({"rounds": [{"tool_calls": [CALC]}, {"text": "Five, or five euros."}]})
    # when
    events = await run(session, message, drain_pending=drain)
    # then
    assert [row[:2] for row in await stored(session)] == [
        ("user", message),
        ("assistant", ""),
        ("tool", "call_calc"),
        ("user", "also in euros"),
        ("assistant", "Five, or five euros."),
    ]
    notice = next(e for e in events if e.type == "data-pending-drained")
    assert notice.to_wire() == {"type": "data-pending-drained", "data": {"count": 1, "messages": ["also in euros"]}}
    last = request_messages(llm)[-1]
    assert last["role"] == "user"
    assert last["content"].startswith("<user_follow_up>\nThe user sent the following message(s) while this tool")
    assert "Message 1:\nalso in euros\n[Attached files: f1]\n</user_follow_up>" in last["content"]


@pytest.mark.asyncio
async def test_follow_ups_that_cannot_be_saved_are_requeued_in_order(
    llm: FakeLLMServer, session: ChatSession, caplog: pytest.LogCaptureFixture
) -> None:
    # given: the write that carries the follow-ups fails once
    from chat import services

    drained = [PendingFollowUp(content="one"), PendingFollowUp(content="two")]
    batches = [[], drained]

    async def drain() -> list[PendingFollowUp]:
        return batches.pop(0) if batches else []

    requeue = mock.AsyncMock(side_effect=RuntimeError("redis down"))
    real_save = services.messages_save_new
    failed = []

    def flaky_save(*, session_id: Any, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not failed and any(m.sequence is None and m.content == "one" for m in messages):
            failed.append(True)
            raise RuntimeError("database is locked")
        return real_save(session_id=session_id, messages=messages)

    message = fake({"rounds": [{"tool_calls": [CALC]}, {"text": "ok"}]})
    # when
    with mock.patch.object(services, "messages_save_new", flaky_save), caplog.at_level(logging.WARNING):
        await run(session, message, drain_pending=drain, requeue_pending=requeue)
    # then
    requeue.assert_awaited_once_with(drained)
    assert "Re-queueing follow-ups failed" in caplog.text
    assert [row[:2] for row in await stored(session)] == [
        ("user", message),
        ("assistant", ""),
        ("tool", "call_calc"),
        ("assistant", "ok"),
    ]
    assert [m["role"] for m in request_messages(llm)] == ["system", "user", "assistant", "tool"]


@pytest.mark.asyncio
async def test_follow_ups_drained_at_turn_start_join_the_current_user_turn(
    llm: FakeLLMServer, session: ChatSession
) -> None:
    # given
    batches = [[PendingFollowUp(content="newer", context={"url": "https://example.com/p"})]]

    async def drain() -> list[PendingFollowUp]:
        return batches.pop(0) if batches else []

    message = fake({"text": "ok"})
    # when
    await run(session, message, drain_pending=drain)
    # then
    assert await stored(session) == [("user", message), ("user", "newer"), ("assistant", "ok")]
    assert request_messages(llm)[-1] == {
        "role": "user",
        "content": f"{message}\n\nnewer\n\n[Page URL: https://example.com/p]",
    }


# ---------------------------------------------------------------- compaction


@pytest.mark.asyncio
async def test_context_over_budget_is_summarized_and_snapshotted(
    llm: FakeLLMServer, session: ChatSession, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given: 10 earlier exchanges of ~200 tokens each and a small budget
    from chat.models import ContextSnapshot

    @sync_to_async
    def seed() -> None:
        for i in range(10):
            ChatMessage.objects.create(
                session=session, sequence=2 * i, role="user", content=f"question {i} " + "word " * 200
            )
            ChatMessage.objects.create(session=session, sequence=2 * i + 1, role="assistant", content=f"answer {i}")

    await seed()
    settings.COPILOT_CONTEXT_TOKEN_BUDGET = 2500
    message = fake({"text": "ok"})
    # when
    with caplog.at_level(logging.INFO):
        events = await run(session, message)
    # then: the summary call, then the turn with summary + the last 6 messages verbatim + the new one
    assert "Context compacted:" in caplog.text
    summary_request, turn_request = llm.requests
    assert summary_request["body"].get("stream") is not True
    sent = turn_request["body"]["messages"]
    assert [m["role"] for m in sent] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert sent[1]["content"].startswith("<conversation_summary>\nSummary of 1 earlier messages: user: question 0")
    assert summary_request["body"]["messages"][0]["content"].startswith("You summarize the earlier part")
    assert sent[2]["content"] == "answer 7"
    assert sent[-1]["content"] == message
    assert shape(events)[:4] == [
        ("start",),
        ("tool-input-start", mock.ANY, "context_compaction"),
        ("tool-input-available", mock.ANY, {}),
        ("tool-output-available", mock.ANY, "Earlier messages were summarized to fit within context limits."),
    ]
    snapshot = await sync_to_async(ContextSnapshot.objects.get)(session=session)
    assert snapshot.message_count == 20
    assert snapshot.messages[0]["is_compact_summary"] is True
    assert len(snapshot.messages) == 7
    # and when: the next turn reuses the snapshot plus the rows after its watermark
    llm.reset()
    settings.COPILOT_CONTEXT_TOKEN_BUDGET = 100_000
    follow = fake({"text": "again"})
    await run(session, follow)
    sent = request_messages(llm)
    assert sent[1]["content"].startswith("<conversation_summary>")
    assert [m["content"] for m in sent[-3:]] == [message, "ok", follow]
    assert len(llm.requests) == 1


@pytest.mark.asyncio
async def test_a_failing_summary_falls_back_to_truncation(
    llm: FakeLLMServer, session: ChatSession, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given
    from chat.engine.providers.openai_compat import OpenAICompatProvider

    @sync_to_async
    def seed() -> None:
        for i in range(10):
            ChatMessage.objects.create(
                session=session, sequence=2 * i, role="user", content=f"question {i} " + "word " * 600
            )
            ChatMessage.objects.create(session=session, sequence=2 * i + 1, role="assistant", content=f"answer {i}")

    await seed()
    settings.COPILOT_CONTEXT_TOKEN_BUDGET = 3000
    # when
    with (
        mock.patch.object(OpenAICompatProvider, "complete", side_effect=RuntimeError("summary down")),
        caplog.at_level(logging.INFO),
    ):
        await run(session, fake({"text": "ok"}))
    # then
    assert "Context summary failed; compacting without the LLM" in caplog.text
    assert "Context compacted:" in caplog.text
    sent = request_messages(llm)
    assert "<conversation_summary>" not in json.dumps(sent)
    assert any(m["content"].endswith("… [truncated]") for m in sent if m["role"] == "user")


# ---------------------------------------------------------------- title


@pytest.mark.asyncio
async def test_title_generation_is_enqueued_for_the_first_user_message_only(
    llm: FakeLLMServer, alice: Any, title_task_delay: mock.MagicMock
) -> None:
    # given
    untitled = await sync_to_async(ChatSession.objects.create)(user=alice)
    # when
    await run(untitled, fake({"text": "one"}))
    await run(untitled, fake({"text": "two"}))
    # then
    title_task_delay.assert_called_once_with(str(untitled.pk))


# ---------------------------------------------------------------- anthropic provider


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
    with mock.patch("ratelimits.services.record_cost_usage") as record:
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
    with mock.patch("ratelimits.services.record_cost_usage") as record:
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


@pytest.mark.asyncio
async def test_turn_start_drain_can_be_left_to_the_caller(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    drain = mock.AsyncMock(return_value=[PendingFollowUp(content="later")])
    # when
    await run(session, fake({"text": "ok"}), drain_pending=drain, drain_at_start=False)
    # then: no tool round, so no boundary either
    drain.assert_not_awaited()
    assert [row[0] for row in await stored(session)] == ["user", "assistant"]


@pytest.mark.asyncio
async def test_a_runaway_turn_stops_at_the_per_turn_cost_cap_and_records_what_it_spent(
    llm: FakeLLMServer, session: ChatSession, settings: Any
) -> None:
    # given: a 2,500 µ$ cap, and a model calling a tool forever at 1,000 µ$ a round
    settings.COPILOT_TURN_COST_CAP_MICRODOLLARS = {"FREE": 2_500}
    round_ = {"tool_calls": [{"name": "get_current_time", "arguments": {}}], "usage": {"prompt_tokens": 10,
              "completion_tokens": 5, "cost": 0.001}}  # fmt: skip
    # when
    with mock.patch("ratelimits.services.record_cost_usage") as record:
        events = await run(session, fake({"rounds": [round_]}))
    # then: three rounds ran (3,000 µ$ ≥ 2,500), then the turn stopped with a clear error
    from chat.engine.turn import TURN_COST_CAP_TEXT

    assert sum(1 for e in events if e.type == "start-step") == 3
    assert shape(events)[-4:] == [
        ("data-usage",), ("data-error", "turn_cost_cap"), ("error", TURN_COST_CAP_TEXT), ("finish",)
    ]  # fmt: skip
    assert len(llm.requests) == 3
    usage = await turn_usage(session)
    assert (usage.outcome, usage.cost_microdollars) == (TurnUsage.Outcome.FAILED, 3_000)
    assert record.call_args_list == [mock.call(user=session.user, microdollars=3_000)]
    assert (await stored(session))[-1] == ("assistant", ERROR_PREFIX + TURN_COST_CAP_TEXT)


@pytest.mark.asyncio
async def test_no_cost_cap_by_default(llm: FakeLLMServer, session: ChatSession, settings: Any) -> None:
    settings.COPILOT_TURN_COST_CAP_MICRODOLLARS = {}
    round_ = {"tool_calls": [{"name": "get_current_time", "arguments": {}}], "usage": {"cost": 1.0}}
    events = await run(session, fake({"rounds": [round_, {"text": "done", "usage": {"cost": 1.0}}]}))
    assert shape(events)[-3:] == [("finish-step",), ("data-usage",), ("finish",)]
    assert (await turn_usage(session)).outcome == TurnUsage.Outcome.COMPLETED
