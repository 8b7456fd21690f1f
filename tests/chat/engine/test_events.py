"""Stream events (wire format and replay), the event accumulator and the reasoning emitter."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chat.engine.accumulator import EventAccumulator
from chat.engine.events import (
    DataErrorEvent,
    DataEvent,
    DataUsageEvent,
    ErrorEvent,
    FinishEvent,
    FinishStepEvent,
    ReasoningDeltaEvent,
    ReasoningEndEvent,
    ReasoningStartEvent,
    StartEvent,
    StartStepEvent,
    StreamEvent,
    TextDeltaEvent,
    TextEndEvent,
    TextStartEvent,
    ToolInputAvailableEvent,
    ToolInputStartEvent,
    ToolOutputAvailableEvent,
    event_from_wire,
)
from chat.engine.reasoning import ReasoningEmitter, reasoning_text_from_extra
from chat.models import ChatMessage

WIRE: list[tuple[StreamEvent, dict[str, Any]]] = [
    (StartEvent(message_id="m1", session_id="s1"), {"type": "start", "messageId": "m1"}),
    (StartStepEvent(), {"type": "start-step"}),
    (FinishStepEvent(), {"type": "finish-step"}),
    (TextStartEvent(id="t1"), {"type": "text-start", "id": "t1"}),
    (TextDeltaEvent(id="t1", delta="Hi"), {"type": "text-delta", "id": "t1", "delta": "Hi"}),
    (TextEndEvent(id="t1"), {"type": "text-end", "id": "t1"}),
    (ReasoningStartEvent(id="r1"), {"type": "reasoning-start", "id": "r1"}),
    (ReasoningDeltaEvent(id="r1", delta="hm"), {"type": "reasoning-delta", "id": "r1", "delta": "hm"}),
    (ReasoningEndEvent(id="r1"), {"type": "reasoning-end", "id": "r1"}),
    (
        ToolInputStartEvent(tool_call_id="c1", tool_name="calculator"),
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "calculator"},
    ),
    (
        ToolInputAvailableEvent(tool_call_id="c1", tool_name="calculator", input={"expression": "1+1"}),
        {"type": "tool-input-available", "toolCallId": "c1", "toolName": "calculator", "input": {"expression": "1+1"}},
    ),
    (
        ToolOutputAvailableEvent(tool_call_id="c1", output={"result": 2}, tool_name="calculator", success=True),
        {"type": "tool-output-available", "toolCallId": "c1", "output": {"result": 2}},
    ),
    (
        ErrorEvent(error_text="Boom", code="llm_error", details={"x": 1}),
        {"type": "error", "errorText": "Boom"},
    ),
    (FinishEvent(), {"type": "finish"}),
    (
        DataUsageEvent(prompt_tokens=10, completion_tokens=2, total_tokens=12, cache_read_tokens=3),
        {
            "type": "data-usage",
            "data": {
                "promptTokens": 10,
                "completionTokens": 2,
                "totalTokens": 12,
                "cacheReadTokens": 3,
                "cacheCreationTokens": 0,
            },
        },
    ),
    (DataErrorEvent(code="tool_round_limit"), {"type": "data-error", "data": {"code": "tool_round_limit"}}),
    (
        DataEvent(name="pending-drained", data={"count": 2}),
        {"type": "data-pending-drained", "data": {"count": 2}},
    ),
]


@pytest.mark.parametrize(("event", "wire"), WIRE, ids=[w["type"] for _, w in WIRE])
def test_to_wire_gives_exactly_the_contract_fields(event: StreamEvent, wire: dict[str, Any]) -> None:
    assert event.to_wire() == wire
    assert event.type == wire["type"]


@pytest.mark.parametrize(("event", "wire"), WIRE, ids=[w["type"] for _, w in WIRE])
def test_every_chunk_type_is_rebuilt_from_the_wire(event: StreamEvent, wire: dict[str, Any]) -> None:
    # when
    rebuilt = event_from_wire(wire)
    # then
    assert rebuilt is not None
    assert type(rebuilt) is type(event)
    assert rebuilt.to_wire() == wire


def test_unknown_chunk_type_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    # when
    with caplog.at_level(logging.WARNING):
        event = event_from_wire({"type": "tool-wizardry", "x": 1})
    # then
    assert event is None
    assert "Unknown chunk type: tool-wizardry" in caplog.text


def test_malformed_known_chunk_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert event_from_wire({"type": "text-delta", "id": "t"}) is None
    assert "Malformed text-delta chunk skipped" in caplog.text


def test_accumulator_folds_text_tools_and_usage_but_not_reasoning() -> None:
    # given
    events: list[StreamEvent] = [
        StartEvent(message_id="m"),
        StartStepEvent(),
        ReasoningStartEvent(id="r"),
        ReasoningDeltaEvent(id="r", delta="thinking"),
        ReasoningEndEvent(id="r"),
        TextStartEvent(id="t"),
        TextDeltaEvent(id="t", delta="Let me "),
        TextDeltaEvent(id="t", delta="check."),
        TextEndEvent(id="t"),
        FinishStepEvent(),
        ToolInputStartEvent(tool_call_id="c", tool_name="calculator"),
        ToolInputAvailableEvent(tool_call_id="c", tool_name="calculator", input={"expression": "1+1"}),
        ToolOutputAvailableEvent(tool_call_id="c", output={"result": 2}, tool_name="calculator", success=True),
        DataUsageEvent(prompt_tokens=5, completion_tokens=3, total_tokens=8),
        FinishEvent(),
    ]
    # when
    folded = EventAccumulator().add_all(events)
    # then
    assert folded.result() == {
        "response_text": "Let me check.",
        "tool_calls": [
            {"id": "c", "name": "calculator", "input": {"expression": "1+1"}, "output": {"result": 2}, "success": True}
        ],
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
    }
    assert folded.reasoning_text == "thinking"
    assert (folded.finished, folded.message_id, folded.steps) == (True, "m", 1)
    assert folded.has_open_blocks is False
    assert folded.closing_events() == []


def test_accumulator_from_wire_records_errors_and_open_blocks() -> None:
    # given
    folded = EventAccumulator()
    # when
    for chunk in [
        {"type": "start", "messageId": "m"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "r"},
        {"type": "text-start", "id": "t"},
        {"type": "data-error", "data": {"code": "llm_error"}},
        {"type": "error", "errorText": "Boom"},
        {"type": "mystery"},
    ]:
        folded.add_wire(chunk)
    # then
    assert (folded.error_text, folded.error_code) == ("Boom", "llm_error")
    assert folded.closing_events() == [ReasoningEndEvent(id="r"), TextEndEvent(id="t"), FinishStepEvent()]


def test_reasoning_emitter_rows_ids_and_idempotent_close() -> None:
    # given
    rows: list[ChatMessage] = []
    emitter = ReasoningEmitter(rows, turn_id="00000000-0000-0000-0000-000000000001")
    # when
    first = emitter.delta("fir") + emitter.delta("st")
    end = emitter.close()
    again = emitter.close()
    second = emitter.delta("second") + emitter.close()
    # then
    assert [e.type for e in first] == ["reasoning-start", "reasoning-delta", "reasoning-delta"]
    assert [e.type for e in end] == ["reasoning-end"]
    assert again == []
    assert {e.id for e in first + end} != {e.id for e in second}  # type: ignore[attr-defined]
    assert [(r.role, r.content, r.sequence) for r in rows] == [
        ("reasoning", "first", None),
        ("reasoning", "second", None),
    ]
    assert emitter.delta("") == []


def test_reasoning_emitter_without_a_list_still_emits() -> None:
    emitter = ReasoningEmitter(None)
    assert [e.type for e in emitter.delta("x") + emitter.close()] == [
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
    ]


@pytest.mark.parametrize(
    ("_case", "extra", "expected"),
    [
        ("reasoning first", {"reasoning": "a", "reasoning_content": "b", "reasoning_details": [{"text": "c"}]}, "a"),
        ("reasoning_content next", {"reasoning": None, "reasoning_content": "b"}, "b"),
        ("details last", {"reasoning": "", "reasoning_details": [{"type": "reasoning.text", "text": "c"}]}, "c"),
        ("summary fallback", {"reasoning_details": [{"type": "reasoning.summary", "summary": "s"}]}, "s"),
        ("encrypted adds nothing", {"reasoning_details": [{"type": "reasoning.encrypted", "data": "x"}]}, ""),
        ("details not a list", {"reasoning_details": "oops"}, ""),
        ("reasoning not a string", {"reasoning": {"x": 1}, "reasoning_content": "b"}, "b"),
        ("nothing", {}, ""),
    ],
)
def test_reasoning_text_priority_and_filtering(_case: str, extra: dict[str, Any], expected: str) -> None:
    assert reasoning_text_from_extra(extra) == expected


def test_reasoning_details_entries_may_be_objects() -> None:
    class Entry:
        type = "reasoning.text"
        text = "from an object"

    assert reasoning_text_from_extra({"reasoning_details": [Entry()]}) == "from an object"
