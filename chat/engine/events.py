"""The turn's stream events: one class per chunk type of the UI message stream (the AI SDK v5 data stream protocol).

``to_wire()`` gives exactly the contract's fields; internal fields (an error's
``code``, a tool output's ``toolName``/``success``) never reach the wire, because
strict client parsers reject extra keys. Machine-readable extras travel as
``data-*`` chunks (``data-usage``, ``data-error``, …). ``event_from_wire``
rebuilds any chunk (replay from the Redis stream).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

# Internal error codes, carried by the data-error chunk (the page maps each to its message).
ERROR_TOOL_ROUND_LIMIT = "tool_round_limit"
ERROR_LLM = "llm_error"
ERROR_STREAM = "stream_error"
ERROR_STREAM_LOCKED = "stream_locked"
ERROR_IDLE_TIMEOUT = "idle_timeout"


class StreamEvent:
    """Base of every chunk; ``type`` is the chunk's wire type."""

    __slots__ = ()
    type: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True, slots=True)
class StartEvent(StreamEvent):
    type: ClassVar[str] = "start"
    message_id: str
    session_id: str | None = None  # internal only

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "messageId": self.message_id}


@dataclass(frozen=True, slots=True)
class StartStepEvent(StreamEvent):
    type: ClassVar[str] = "start-step"


@dataclass(frozen=True, slots=True)
class FinishStepEvent(StreamEvent):
    type: ClassVar[str] = "finish-step"


@dataclass(frozen=True, slots=True)
class TextStartEvent(StreamEvent):
    type: ClassVar[str] = "text-start"
    id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


@dataclass(frozen=True, slots=True)
class TextDeltaEvent(StreamEvent):
    type: ClassVar[str] = "text-delta"
    id: str
    delta: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "delta": self.delta}


@dataclass(frozen=True, slots=True)
class TextEndEvent(StreamEvent):
    type: ClassVar[str] = "text-end"
    id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


@dataclass(frozen=True, slots=True)
class ReasoningStartEvent(StreamEvent):
    type: ClassVar[str] = "reasoning-start"
    id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


@dataclass(frozen=True, slots=True)
class ReasoningDeltaEvent(StreamEvent):
    type: ClassVar[str] = "reasoning-delta"
    id: str
    delta: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "delta": self.delta}


@dataclass(frozen=True, slots=True)
class ReasoningEndEvent(StreamEvent):
    type: ClassVar[str] = "reasoning-end"
    id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


@dataclass(frozen=True, slots=True)
class ToolInputStartEvent(StreamEvent):
    type: ClassVar[str] = "tool-input-start"
    tool_call_id: str
    tool_name: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "toolCallId": self.tool_call_id, "toolName": self.tool_name}


@dataclass(frozen=True, slots=True)
class ToolInputAvailableEvent(StreamEvent):
    type: ClassVar[str] = "tool-input-available"
    tool_call_id: str
    tool_name: str
    input: Any

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "toolCallId": self.tool_call_id, "toolName": self.tool_name, "input": self.input}


@dataclass(frozen=True, slots=True)
class ToolOutputAvailableEvent(StreamEvent):
    type: ClassVar[str] = "tool-output-available"
    tool_call_id: str
    output: Any  # str or a JSON value
    tool_name: str = ""  # internal only
    success: bool = True  # internal only

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "toolCallId": self.tool_call_id, "output": self.output}


@dataclass(frozen=True, slots=True)
class ToolApprovalRequestEvent(StreamEvent):
    """The call waits for the user's Approve / Deny (AI SDK 6 ``tool-approval-request``).

    The decision does not travel back through the stream: the client answers with
    ``POST …/approvals/{approvalId}`` (or the WebSocket ``approval`` frame); the turn
    then streams the tool's output, or ``tool-output-denied``."""

    type: ClassVar[str] = "tool-approval-request"
    approval_id: str
    tool_call_id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "approvalId": self.approval_id, "toolCallId": self.tool_call_id}


@dataclass(frozen=True, slots=True)
class ToolOutputDeniedEvent(StreamEvent):
    """The call did not run: the user denied it, nobody answered in time, or the turn stopped."""

    type: ClassVar[str] = "tool-output-denied"
    tool_call_id: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "toolCallId": self.tool_call_id}


@dataclass(frozen=True, slots=True)
class ErrorEvent(StreamEvent):
    type: ClassVar[str] = "error"
    error_text: str
    code: str = ERROR_LLM  # internal only; published as data-error
    details: Mapping[str, Any] | None = None  # internal only

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "errorText": self.error_text}


@dataclass(frozen=True, slots=True)
class FinishEvent(StreamEvent):
    type: ClassVar[str] = "finish"


@dataclass(frozen=True, slots=True)
class DataEvent(StreamEvent):
    """Any custom ``data-{name}`` chunk (``data-pending-drained``, ``data-usage-warning``, …)."""

    name: str
    data: Any = field(default_factory=dict)

    @property
    def type(self) -> str:  # type: ignore[override]  # per instance: data-{name}
        return f"data-{self.name}"

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}


@dataclass(frozen=True, slots=True)
class DataUsageEvent(StreamEvent):
    type: ClassVar[str] = "data-usage"
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "data": {
                "promptTokens": self.prompt_tokens,
                "completionTokens": self.completion_tokens,
                "totalTokens": self.total_tokens,
                "cacheReadTokens": self.cache_read_tokens,
                "cacheCreationTokens": self.cache_creation_tokens,
            },
        }


@dataclass(frozen=True, slots=True)
class DataErrorEvent(StreamEvent):
    """The machine-readable code of the ``error`` chunk that precedes it."""

    type: ClassVar[str] = "data-error"
    code: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "data": {"code": self.code}}


def _data(chunk: Mapping[str, Any]) -> Mapping[str, Any]:
    data = chunk.get("data")
    return data if isinstance(data, Mapping) else {}


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], StreamEvent]] = {
    "start": lambda c: StartEvent(message_id=str(c["messageId"])),
    "start-step": lambda c: StartStepEvent(),
    "finish-step": lambda c: FinishStepEvent(),
    "text-start": lambda c: TextStartEvent(id=str(c["id"])),
    "text-delta": lambda c: TextDeltaEvent(id=str(c["id"]), delta=str(c["delta"])),
    "text-end": lambda c: TextEndEvent(id=str(c["id"])),
    "reasoning-start": lambda c: ReasoningStartEvent(id=str(c["id"])),
    "reasoning-delta": lambda c: ReasoningDeltaEvent(id=str(c["id"]), delta=str(c["delta"])),
    "reasoning-end": lambda c: ReasoningEndEvent(id=str(c["id"])),
    "tool-input-start": lambda c: ToolInputStartEvent(tool_call_id=str(c["toolCallId"]), tool_name=str(c["toolName"])),
    "tool-input-available": lambda c: ToolInputAvailableEvent(
        tool_call_id=str(c["toolCallId"]), tool_name=str(c["toolName"]), input=c.get("input")
    ),
    "tool-output-available": lambda c: ToolOutputAvailableEvent(tool_call_id=str(c["toolCallId"]), output=c["output"]),
    "tool-approval-request": lambda c: ToolApprovalRequestEvent(
        approval_id=str(c["approvalId"]), tool_call_id=str(c["toolCallId"])
    ),
    "tool-output-denied": lambda c: ToolOutputDeniedEvent(tool_call_id=str(c["toolCallId"])),
    "error": lambda c: ErrorEvent(error_text=str(c["errorText"]), code=""),
    "finish": lambda c: FinishEvent(),
    "data-usage": lambda c: DataUsageEvent(
        prompt_tokens=int(_data(c).get("promptTokens", 0)),
        completion_tokens=int(_data(c).get("completionTokens", 0)),
        total_tokens=int(_data(c).get("totalTokens", 0)),
        cache_read_tokens=int(_data(c).get("cacheReadTokens", 0)),
        cache_creation_tokens=int(_data(c).get("cacheCreationTokens", 0)),
    ),
    "data-error": lambda c: DataErrorEvent(code=str(_data(c).get("code", ""))),
}


def event_from_wire(chunk: Mapping[str, Any]) -> StreamEvent | None:
    """Rebuild an event from its wire dict; an unknown or malformed chunk is logged and None."""
    chunk_type = chunk.get("type")
    if not isinstance(chunk_type, str):
        logger.warning("Unknown chunk type: %r", chunk_type)
        return None
    builder = _BUILDERS.get(chunk_type)
    try:
        if builder is not None:
            return builder(chunk)
        if chunk_type.startswith("data-") and len(chunk_type) > len("data-"):
            return DataEvent(name=chunk_type[len("data-") :], data=chunk.get("data"))
    except (KeyError, TypeError, ValueError):
        logger.warning("Malformed %s chunk skipped: %r", chunk_type, chunk)
        return None
    logger.warning("Unknown chunk type: %s", chunk_type)
    return None
