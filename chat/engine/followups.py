"""Pending follow-ups: messages the user sent while a turn was running.

The transport owns the Redis buffer; the engine receives drained messages
(``PendingFollowUp`` or the transport's own type, see ``PendingLike``) through
the ``drain_pending`` hook. ``FollowUpDrain`` takes them at turn start, where
they join the current user turn, and at each tool-round boundary, where they are
saved after the round's tool rows and shown to the model as one
``<user_follow_up>`` message. Messages that cannot be saved go back to the
buffer, in order, through ``requeue_pending``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from chat.selectors import attachment_public
from copilot_site.core.sql import connection_released

from .attachments import IMAGE_IDS_KEY, IMAGE_TYPES, AttachmentLike, attachments_block, carried
from .events import DataEvent, StreamEvent

if TYPE_CHECKING:
    from chat.models import ChatMessage

    from .providers import LLMMessage
    from .request import PendingLike, TurnHooks
    from .transcript import Transcript

logger = logging.getLogger(__name__)

FOLLOW_UP_ENTRY_MAX_CHARS = 2000
FOLLOW_UP_BODY_MAX_CHARS = 6000

FOLLOW_UP_HEADER = (
    "The user sent the following message(s) while this tool was running. Treat them as a continuation of "
    "their current request — acknowledge and act on them in your next response. Do not echo these tags back."
)


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


def format_follow_up_block(
    messages: Sequence[PendingLike], attachments: Mapping[str, AttachmentLike] | None = None
) -> str:
    """The single ``<user_follow_up>`` user message injected at a round boundary; a message's
    files are listed in its entry as an ``[Attached files]`` note (``attachments``: the files
    by id; without their metadata the ids alone)."""
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
        if file_ids and attachments is not None:
            block = attachments_block(carried(file_ids, attachments))
            if block:
                entry += f"\n{block}"
        elif file_ids:
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
    """A follow-up drained at turn start, as the model sees it (its page spelled out; its
    files' note is added from the row's ``file_ids`` like any user row's)."""
    text = message.content
    url = _context_field(message, "url")
    if url:
        text += f"\n\n[Page URL: {url}]"
    page = _context_field(message, "content")
    if page:
        text += f"\n\n[Page content]\n{page}"
    return text


class FollowUpDrain:
    """One turn's draining of pending follow-ups into its transcript."""

    def __init__(self, transcript: Transcript, hooks: TurnHooks, *, log_prefix: str) -> None:
        self.transcript = transcript
        self.drain_pending = hooks.drain_pending
        self.requeue_pending = hooks.requeue_pending
        self.log_prefix = log_prefix

    async def at_start(self) -> None:
        """Follow-ups that arrived after the turn was claimed join the current user turn."""
        drained = await self._take()
        if not drained:
            return
        rows = [self._user_row(message, llm_text=turn_start_llm_text(message)) for message in drained]
        await self._remember_files(drained)
        try:
            await self.transcript.save()
        except Exception:
            logger.warning("%s Could not persist follow-ups drained at turn start", self.log_prefix, exc_info=True)
            await self._give_back(rows, drained)

    async def at_boundary(self, llm_messages: list[LLMMessage]) -> list[StreamEvent]:
        """Persist the round's tool rows together with follow-ups drained now; the saved
        follow-ups go to the model (appended to ``llm_messages``) and to the client."""
        drained = await self._take()
        rows = [self._user_row(message) for message in drained]
        try:
            await self.transcript.save()
        except Exception:
            if not drained:
                raise
            logger.warning("%s Could not persist tool rows and follow-ups", self.log_prefix, exc_info=True)
        if not drained:
            return []
        if any(row.sequence is None for row in rows):
            await self._give_back(rows, drained)
            return []
        await self._remember_files(drained)
        attachments = self.transcript.attachments
        follow_up: LLMMessage = {"role": "user", "content": format_follow_up_block(drained, attachments)}
        images = [
            str(a.pk)
            for message in drained
            for a in carried(_file_ids(message), attachments)
            if a.mime_type in IMAGE_TYPES
        ]
        if images:
            follow_up[IMAGE_IDS_KEY] = images
        llm_messages.append(follow_up)
        notice: dict[str, Any] = {"count": len(drained), "messages": [message.content for message in drained]}
        carried_files = [
            [attachment_public(a) for a in carried(_file_ids(message), attachments)] for message in drained
        ]
        if any(carried_files):
            notice["attachments"] = carried_files  # per message, in order
        return [DataEvent(name="pending-drained", data=notice)]

    async def _remember_files(self, drained: Sequence[PendingLike]) -> None:
        ids = [file_id for message in drained for file_id in _file_ids(message)]
        if not ids:
            return
        try:
            await sync_to_async(connection_released(self.transcript.remember_attachments))(ids)
        except Exception:
            logger.warning("%s Could not load the files of drained follow-ups", self.log_prefix, exc_info=True)

    def _user_row(self, message: PendingLike, *, llm_text: str | None = None) -> ChatMessage:
        """The follow-up's user row, with the client's `client_message_id` when it sent one
        (a retry of the same message is then recognised, and the database keeps one row)."""
        row = self.transcript.user_row(message.content, llm_text=llm_text, file_ids=_file_ids(message))
        client_message_id = getattr(message, "client_message_id", None)
        row.client_message_id = client_message_id if isinstance(client_message_id, str) and client_message_id else None
        return row

    async def _take(self) -> list[PendingLike]:
        if self.drain_pending is None:
            return []
        try:
            return list(await self.drain_pending())
        except Exception:
            logger.warning("%s Draining pending follow-ups failed; treated as empty", self.log_prefix, exc_info=True)
            return []

    async def _give_back(self, rows: list[ChatMessage], drained: list[PendingLike]) -> None:
        """Remove unsaved follow-up rows from the transcript and hand the messages back, in order."""
        self.transcript.forget(rows)
        if self.requeue_pending is not None:
            try:
                await self.requeue_pending(drained)
            except Exception:
                logger.warning("%s Re-queueing follow-ups failed", self.log_prefix, exc_info=True)
        logger.warning("%s %d follow-up(s) could not be saved and were re-queued", self.log_prefix, len(drained))
