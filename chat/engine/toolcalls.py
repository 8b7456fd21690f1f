"""A round's tool calls as the provider streams them: drafts folded from deltas, then the
finished calls in the stored (OpenAI) shape the transcript keeps and the model is sent."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from .providers import ToolCallDelta

logger = logging.getLogger(__name__)


@dataclass
class ToolCallDraft:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    @property
    def arguments_text(self) -> str:
        return "".join(self.arguments) or "{}"


def tool_call_add_delta(drafts: dict[int, ToolCallDraft], delta: ToolCallDelta) -> None:
    """Fold one streamed piece of a tool call into its draft (calls are keyed by index)."""
    draft = drafts.get(delta.index)
    if draft is None:
        draft = drafts[delta.index] = ToolCallDraft()
    if delta.id:
        draft.id = delta.id
    if delta.name:
        draft.name = delta.name
    if delta.arguments:
        draft.arguments.append(delta.arguments)


def tool_calls_finished(drafts: dict[int, ToolCallDraft], *, log_prefix: str) -> list[ToolCallDraft]:
    """The round's calls in index order; a call without a name is dropped, one without an id gets one."""
    calls = []
    for index in sorted(drafts):
        draft = drafts[index]
        if not draft.name:
            logger.warning("%s Dropping a tool call without a name", log_prefix)
            continue
        if not draft.id:
            draft.id = f"call_{uuid.uuid4().hex[:24]}"
        calls.append(draft)
    return calls


def tool_calls_stored(calls: list[ToolCallDraft]) -> list[dict[str, Any]]:
    return [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments_text}}
        for call in calls
    ]
