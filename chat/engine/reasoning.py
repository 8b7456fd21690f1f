"""Reasoning: parsing the providers' extension fields and the block emitter."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from chat.models import ChatMessage

from .events import ReasoningDeltaEvent, ReasoningEndEvent, ReasoningStartEvent, StreamEvent

logger = logging.getLogger(__name__)

_TEXT_DETAIL_TYPES = frozenset({"reasoning.text", "reasoning.summary"})


def _entry_field(entry: Any, name: str) -> Any:
    """Entries may be dicts or typed SDK objects: read by attribute, fall back to the dict."""
    value = getattr(entry, name, None)
    if value is None and isinstance(entry, Mapping):
        value = entry.get(name)
    return value


def reasoning_details_text(details: Any) -> str:
    """Text of a ``reasoning_details`` list: only ``reasoning.text`` / ``reasoning.summary``
    entries, or entries without a type, contribute (encrypted and future types do not)."""
    if not isinstance(details, list):
        logger.warning("Dropping malformed reasoning payload: reasoning_details=%r", details)
        return ""
    parts: list[str] = []
    for entry in details:
        entry_type = _entry_field(entry, "type")
        if entry_type is not None and entry_type not in _TEXT_DETAIL_TYPES:
            continue
        text = _entry_field(entry, "text")
        if not isinstance(text, str) or not text:
            text = _entry_field(entry, "summary")
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


def reasoning_text_from_extra(extra: Mapping[str, Any] | None) -> str:
    """The reasoning text of a delta: ``reasoning`` (str), else ``reasoning_content`` (str), else ``reasoning_details``.

    The first non-empty field wins (OpenRouter sends the same text in several).
    A malformed payload is logged and counts as empty; the stream goes on.
    """
    if not extra:
        return ""
    for key in ("reasoning", "reasoning_content"):
        value = extra.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str):
            return value
        logger.warning("Dropping malformed reasoning payload: %s=%r", key, value)
    details = extra.get("reasoning_details")
    if details is None:
        return ""
    return reasoning_details_text(details)


class ReasoningEmitter:
    """Turns reasoning text into wire events and ``role="reasoning"`` rows.

    The first delta of a block emits ``reasoning-start`` and appends a new row to
    ``messages`` (the very list the turn persists); each delta emits
    ``reasoning-delta`` and extends that row; ``close()`` is idempotent, emits
    ``reasoning-end``, keeps the row and rotates the id, so the next block gets
    its own row. Without a list the wire events are still emitted.
    """

    __slots__ = ("_id", "_messages", "_parts", "_row", "_turn_id")

    def __init__(self, messages: list[ChatMessage] | None = None, *, turn_id: uuid.UUID | str | None = None) -> None:
        self._messages = messages
        self._turn_id = turn_id
        self._id = str(uuid.uuid4())
        self._row: ChatMessage | None = None
        self._parts: list[str] | None = None

    @property
    def is_open(self) -> bool:
        return self._parts is not None

    def delta(self, text: str) -> list[StreamEvent]:
        if not text:
            return []
        events: list[StreamEvent] = []
        if self._parts is None:
            self._parts = []
            events.append(ReasoningStartEvent(id=self._id))
            if self._messages is not None:
                self._row = ChatMessage(role=ChatMessage.Role.REASONING, content="", turn_id=self._turn_id)
                self._messages.append(self._row)
        self._parts.append(text)
        events.append(ReasoningDeltaEvent(id=self._id, delta=text))
        return events

    def sync(self) -> None:
        """Write the text received so far onto the open block's row (before a save)."""
        if self._row is not None and self._parts is not None:
            self._row.content = "".join(self._parts)

    def close(self) -> list[StreamEvent]:
        if self._parts is None:
            return []
        self.sync()
        event = ReasoningEndEvent(id=self._id)
        self._parts = None
        self._row = None
        self._id = str(uuid.uuid4())
        return [event]
