"""Context over budget: summarized and snapshotted, or truncated when the summary fails."""

from __future__ import annotations

import json
import logging
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async

from chat.models import ChatMessage, ChatSession
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    request_messages,
    run,
    shape,
)
from tests.factories import link_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


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
        link_rows(session)

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
        link_rows(session)

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
