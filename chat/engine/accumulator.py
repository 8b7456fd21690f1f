"""Folding a turn's event stream into its result (text, tool calls, usage, error): used by the sub-session waiter,
the transport (to close blocks a stopped engine left open on the wire) and tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .events import (
    DataErrorEvent,
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


@dataclass
class FoldedToolCall:
    id: str
    name: str
    input: Any = None
    output: Any = None
    success: bool | None = None  # unknown when rebuilt from the wire

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "input": self.input, "output": self.output, "success": self.success}


class EventAccumulator:
    """Folds events into ``{response_text, tool_calls, prompt/completion/total tokens}``.

    Reasoning deltas are kept apart (``reasoning_text``), never in ``response_text``.
    """

    def __init__(self, *, keep_events: bool = False) -> None:
        self.keep_events = keep_events
        self.message_id: str | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._tool_calls: dict[str, FoldedToolCall] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.total_tokens = 0
        self.cache_read_tokens = 0
        self.cache_creation_tokens = 0
        self.error_text: str | None = None
        self.error_code: str | None = None
        self.finished = False
        self.steps = 0
        self._open_text: list[str] = []
        self._open_reasoning: list[str] = []
        self._step_open = False
        self.events: list[StreamEvent] = []

    def add(self, event: StreamEvent) -> None:
        if self.keep_events:
            self.events.append(event)
        if isinstance(event, TextDeltaEvent):
            self._text.append(event.delta)
        elif isinstance(event, ReasoningDeltaEvent):
            self._reasoning.append(event.delta)
        elif isinstance(event, TextStartEvent):
            self._open_text.append(event.id)
        elif isinstance(event, TextEndEvent):
            if event.id in self._open_text:
                self._open_text.remove(event.id)
        elif isinstance(event, ReasoningStartEvent):
            self._open_reasoning.append(event.id)
        elif isinstance(event, ReasoningEndEvent):
            if event.id in self._open_reasoning:
                self._open_reasoning.remove(event.id)
        elif isinstance(event, StartStepEvent):
            self._step_open = True
            self.steps += 1
        elif isinstance(event, FinishStepEvent):
            self._step_open = False
        elif isinstance(event, ToolInputStartEvent):
            self._tool_calls.setdefault(event.tool_call_id, FoldedToolCall(event.tool_call_id, event.tool_name))
        elif isinstance(event, ToolInputAvailableEvent):
            call = self._tool_calls.setdefault(event.tool_call_id, FoldedToolCall(event.tool_call_id, event.tool_name))
            call.input = event.input
        elif isinstance(event, ToolOutputAvailableEvent):
            call = self._tool_calls.setdefault(event.tool_call_id, FoldedToolCall(event.tool_call_id, event.tool_name))
            call.output = event.output
            call.success = event.success if event.tool_name else None
        elif isinstance(event, DataUsageEvent):
            self.prompt_tokens = event.prompt_tokens
            self.completion_tokens = event.completion_tokens
            self.total_tokens = event.total_tokens
            self.cache_read_tokens = event.cache_read_tokens
            self.cache_creation_tokens = event.cache_creation_tokens
        elif isinstance(event, ErrorEvent):
            self.error_text = event.error_text
            self.error_code = event.code or self.error_code
        elif isinstance(event, DataErrorEvent):
            self.error_code = event.code
        elif isinstance(event, StartEvent):
            self.message_id = event.message_id
        elif isinstance(event, FinishEvent):
            self.finished = True

    def add_all(self, events: Iterable[StreamEvent]) -> EventAccumulator:
        for event in events:
            self.add(event)
        return self

    def add_wire(self, chunk: Mapping[str, Any]) -> None:
        event = event_from_wire(chunk)
        if event is not None:
            self.add(event)

    @property
    def response_text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning_text(self) -> str:
        return "".join(self._reasoning)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [call.as_dict() for call in self._tool_calls.values()]

    @property
    def has_open_blocks(self) -> bool:
        return bool(self._open_text or self._open_reasoning or self._step_open)

    def closing_events(self) -> list[StreamEvent]:
        """The events that close what is still open (reasoning, text, then the step), in the
        engine's closing order. A transport publishes them after stopping an engine mid-block."""
        events: list[StreamEvent] = [ReasoningEndEvent(id=i) for i in self._open_reasoning]
        events += [TextEndEvent(id=i) for i in self._open_text]
        if self._step_open:
            events.append(FinishStepEvent())
        return events

    def result(self) -> dict[str, Any]:
        return {
            "response_text": self.response_text,
            "tool_calls": self.tool_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
