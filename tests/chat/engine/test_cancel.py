"""Stops: closing the stream or setting the cancel event persists what was shown and the stop marker."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async

from chat.engine.accumulator import EventAccumulator
from chat.engine.events import StreamEvent
from chat.models import ChatSession, TurnUsage
from chat.tools.builtin.clock import GetCurrentTime
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    CLOCK,
    STOPPED_ROW,
    message_append_user,
    shape,
    start_turn,
    stored,
    turn_usage,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


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
        STOPPED_ROW,
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
    assert await stored(session) == [("user", message), ("reasoning", "ab"), STOPPED_ROW]


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
        STOPPED_ROW,
    ]
    assert len(llm.requests) == 1
