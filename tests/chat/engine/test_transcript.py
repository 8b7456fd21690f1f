"""The transcript a turn loads and leaves: ownership, pruned orphans, what later turns see, the title task."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async

from chat.models import ChatMessage, ChatSession
from chat.tools.builtin.clock import GetCurrentTime
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    STOPPED_ROW,
    error_row,
    message_append_user,
    request_messages,
    run,
    sequences,
    shape,
    start_turn,
    stored,
)
from tests.factories import link_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


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
        STOPPED_ROW[:2],
    ]
    assert first_turn[-1] == STOPPED_ROW
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
    assert "Stopped" not in json.dumps(sent)


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
            error_row("boom"),
            ("user", "q3"),
            STOPPED_ROW,
        ]
        for sequence, (role, content, *kind) in enumerate(contents):
            ChatMessage.objects.create(
                session=session, sequence=sequence, role=role, content=content, kind=kind[0] if kind else "message"
            )
        link_rows(session)

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


@pytest.mark.asyncio
async def test_a_foreign_session_is_not_found(llm: FakeLLMServer, session: ChatSession, bob: Any) -> None:
    # when
    events = [e async for e in start_turn(session, user_id=bob.pk)]
    # then
    assert shape(events) == [("data-error", "llm_error"), ("error", f"Session {session.pk} not found."), ("finish",)]
    assert await stored(session) == []


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
