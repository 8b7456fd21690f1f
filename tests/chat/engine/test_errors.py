"""Provider failures mid-turn: the blocks close in order, the partial answer and the error are stored."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest

from chat.engine.failures import FAILURE_TEXTS
from chat.models import ChatSession
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    error_row,
    run,
    shape,
    stored,
    turn_usage,
)

# The provider's own error text ("Upstream provider error") goes to the logs; the user reads this.
GENERIC = FAILURE_TEXTS["llm_error"]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


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
        ("finish-step",), ("data-usage",), ("data-error", "llm_error"), ("error", GENERIC),
        ("finish",),
    ]  # fmt: skip
    assert await stored(session) == [
        ("user", message),
        ("reasoning", "abcd"),
        error_row(GENERIC),
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
        ("finish-step",), ("data-usage",), ("data-error", "llm_error"), ("error", GENERIC),
        ("finish",),
    ]  # fmt: skip
    assert await stored(session) == [
        ("user", message),
        ("assistant", "Partial "),
        error_row(GENERIC),
    ]
    usage = await turn_usage(session)
    assert (usage.outcome, usage.tokens_estimated, usage.completion_tokens) == ("failed", True, 2)


@pytest.mark.asyncio
async def test_a_dropped_connection_mid_stream_is_an_error_too(llm: FakeLLMServer, session: ChatSession) -> None:
    # when
    events = await run(session, fake({"text": "abcdefgh", "error_after_chunks": 1, "error_mode": "disconnect"}))
    # then
    assert [s[0] for s in shape(events)][-5:] == ["finish-step", "data-usage", "data-error", "error", "finish"]
    assert (await stored(session))[1:] == [("assistant", "abcd"), error_row(mock.ANY)]


@pytest.mark.asyncio
async def test_start_and_error_frames_carry_only_their_spec_fields(llm: FakeLLMServer, session: ChatSession) -> None:
    # when
    events = await run(session, fake({"http_status": 500}))
    # then
    start, error = events[0].to_wire(), events[-2].to_wire()
    assert set(start) == {"type", "messageId"}
    assert uuid.UUID(start["messageId"])
    assert set(error) == {"type", "errorText"}
