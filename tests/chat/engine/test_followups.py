"""Follow-ups drained during a turn: at its start, at tool-round boundaries, and re-queued when they cannot be saved."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest

from chat.engine.followups import PendingFollowUp
from chat.models import ChatMessage, ChatSession
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    CALC,
    request_messages,
    run,
    stored,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


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
    # "f1" names no file: no note (a real file's note: tests/chat/files/test_engine_attachments.py)
    assert "Message 1:\nalso in euros\n</user_follow_up>" in last["content"]


@pytest.mark.asyncio
async def test_follow_ups_that_cannot_be_saved_are_requeued_in_order(
    llm: FakeLLMServer, session: ChatSession, caplog: pytest.LogCaptureFixture
) -> None:
    # given: the write that carries the follow-ups fails once
    from chat.services import messages as services

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
