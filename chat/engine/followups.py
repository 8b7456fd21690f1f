"""Pending follow-ups: messages the user sent while a turn was running (SPEC 4.15).

The transport owns the Redis buffer; the engine receives drained messages as
``PendingFollowUp`` values through the ``drain_pending`` hook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

FOLLOW_UP_ENTRY_MAX_CHARS = 2000
FOLLOW_UP_BODY_MAX_CHARS = 6000

FOLLOW_UP_HEADER = (
    "The user sent the following message(s) while this tool was running. Treat them as a continuation of "
    "their current request — acknowledge and act on them in your next response. Do not echo these tags back."
)


class PendingLike(Protocol):
    """What the engine reads from a drained message: ``content``, and when present
    ``context`` (``{url?, content?}``) and ``file_ids``. The transport's own pending
    type fits as is."""

    @property
    def content(self) -> str: ...


@dataclass(frozen=True)
class PendingFollowUp:
    content: str
    file_ids: Sequence[str] = field(default_factory=tuple)
    context: Mapping[str, Any] | None = None
    enqueued_at: float = 0.0


def _context_field(message: PendingLike, key: str) -> str | None:
    context = getattr(message, "context", None)
    value = context.get(key) if isinstance(context, Mapping) else None
    return value if isinstance(value, str) and value.strip() else None


def _file_ids(message: PendingLike) -> list[str]:
    file_ids = getattr(message, "file_ids", None) or ()
    return [str(file_id) for file_id in file_ids]


def format_follow_up_block(messages: Sequence[PendingLike]) -> str:
    """The single ``<user_follow_up>`` user message injected at a round boundary (SPEC 4.15.5)."""
    entries: list[str] = []
    body_length = 0
    for index, message in enumerate(messages):
        text = message.content
        if len(text) > FOLLOW_UP_ENTRY_MAX_CHARS:
            text = text[:FOLLOW_UP_ENTRY_MAX_CHARS] + "… [truncated]"
        entry = f"Message {index + 1}:\n{text}"
        url = _context_field(message, "url")
        if url:
            entry += f"\n[Page URL: {url}]"
        file_ids = _file_ids(message)
        if file_ids:
            entry += f"\n[Attached files: {', '.join(file_ids)}]"
        added = len(entry) + (2 if entries else 0)
        if body_length + added > FOLLOW_UP_BODY_MAX_CHARS:
            entries.append(f"… [{len(messages) - index} more message(s) truncated]")
            break
        entries.append(entry)
        body_length += added
    body = "\n\n".join(entries)
    return f"<user_follow_up>\n{FOLLOW_UP_HEADER}\n\n{body}\n</user_follow_up>"


def turn_start_llm_text(message: PendingLike) -> str:
    """A follow-up drained at turn start, as the model sees it (SPEC 4.15.6)."""
    text = message.content
    url = _context_field(message, "url")
    if url:
        text += f"\n\n[Page URL: {url}]"
    page = _context_field(message, "content")
    if page:
        text += f"\n\n[Page content]\n{page}"
    file_ids = _file_ids(message)
    if file_ids:
        text += "\n\n[Attached files]\n" + "\n".join(f"- file_id={file_id}" for file_id in file_ids)
        text += "\nUse read_workspace_file with the file_id to access file contents."
    return text
