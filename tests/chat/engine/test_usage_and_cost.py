"""Tokens and cost: reported, priced, estimated, never charged for nothing produced; the per-turn cap."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async

from chat.models import ChatSession, TurnUsage
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import (
    CALC,
    error_row,
    run,
    shape,
    stored,
    turn_usage,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]


@pytest.mark.asyncio
async def test_usage_and_cost_reported_by_the_provider(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 40, "cost": 0.0123}
    message = fake({"rounds": [{"tool_calls": [CALC], "usage": usage}, {"text": "ok", "usage": usage}]})
    # when
    with mock.patch("ratelimits.services.usage_record") as record:
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
    with mock.patch("ratelimits.services.usage_record") as record:
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
    with mock.patch("ratelimits.services.usage_record") as record, caplog.at_level(logging.ERROR):
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
    with mock.patch("ratelimits.services.usage_record") as record, caplog.at_level(logging.ERROR):
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
    with mock.patch("ratelimits.services.usage_record") as record:
        events = await run(session, message)
    # then
    error = "The model provider is having problems right now. Try again in a few minutes."
    assert shape(events) == [
        ("start",), ("start-step",), ("finish-step",), ("data-error", "provider_unavailable"), ("error", error),
        ("finish",),
    ]  # fmt: skip
    record.assert_not_called()
    row = await turn_usage(session)
    assert (row.outcome, row.total_tokens, row.cost_microdollars, row.tokens_estimated) == ("failed", 0, None, False)
    assert await stored(session) == [("user", message), error_row(error)]


@pytest.mark.asyncio
async def test_a_runaway_turn_stops_at_the_per_turn_cost_cap_and_records_what_it_spent(
    llm: FakeLLMServer, session: ChatSession, settings: Any
) -> None:
    # given: a 2,500 µ$ cap, and a model calling a tool forever at 1,000 µ$ a round
    settings.COPILOT_TURN_COST_CAP_MICRODOLLARS = {"FREE": 2_500}
    round_ = {"tool_calls": [{"name": "get_current_time", "arguments": {}}], "usage": {"prompt_tokens": 10,
              "completion_tokens": 5, "cost": 0.001}}  # fmt: skip
    # when
    with mock.patch("ratelimits.services.usage_record") as record:
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
    assert (await stored(session))[-1] == error_row(TURN_COST_CAP_TEXT)


@pytest.mark.asyncio
async def test_no_cost_cap_by_default(llm: FakeLLMServer, session: ChatSession, settings: Any) -> None:
    settings.COPILOT_TURN_COST_CAP_MICRODOLLARS = {}
    round_ = {"tool_calls": [{"name": "get_current_time", "arguments": {}}], "usage": {"cost": 1.0}}
    events = await run(session, fake({"rounds": [round_, {"text": "done", "usage": {"cost": 1.0}}]}))
    # $2 of spend takes the free plan's window past 80 %: the warning comes last, as in production
    assert shape(events)[-4:] == [("finish-step",), ("data-usage",), ("data-usage-warning",), ("finish",)]
    assert (await turn_usage(session)).outcome == TurnUsage.Outcome.COMPLETED
