from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from .errors import SessionNotFound
from .models import ChatMessage, ChatSession


def session_get_for_user(*, session_id: uuid.UUID | str, user: object) -> ChatSession:
    """The user's session, or SessionNotFound — identical for missing and foreign ids."""
    try:
        return ChatSession.objects.get(pk=session_id, user=user)
    except (ChatSession.DoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise SessionNotFound(session_id) from exc


def session_list(*, user: object) -> QuerySet[ChatSession]:
    return ChatSession.objects.filter(user=user).order_by("-updated_at")


@dataclass(frozen=True)
class MessagePage:
    messages: list[ChatMessage]
    has_more: bool

    @property
    def oldest_sequence(self) -> int | None:
        return self.messages[0].sequence if self.messages else None


def message_page(*, session: ChatSession, limit: int, before_sequence: int | None = None) -> MessagePage:
    """Newest-first page of a session's messages, returned in ascending order."""
    rows = ChatMessage.objects.filter(session=session, session__user=session.user_id)
    if before_sequence is not None:
        rows = rows.filter(sequence__lt=before_sequence)
    page = list(rows.order_by("-sequence")[: limit + 1])
    has_more = len(page) > limit
    return MessagePage(messages=list(reversed(page[:limit])), has_more=has_more)
