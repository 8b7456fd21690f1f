from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from .errors import SessionNotFound
from .models import COPILOT_SYSTEM_PREFIX, ChatMessage, ChatSession, ContextSnapshot, Memory


def session_get_for_user(*, session_id: uuid.UUID | str, user: Any) -> ChatSession:
    """The user's session, or SessionNotFound — identical for missing and foreign ids."""
    try:
        return ChatSession.objects.get(pk=session_id, user=user)
    except (ChatSession.DoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise SessionNotFound(session_id) from exc


def session_list(*, user: Any) -> QuerySet[ChatSession]:
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


def session_messages(*, session_id: uuid.UUID | str) -> list[ChatMessage]:
    """Every row of a session in sequence order (the turn engine's working list)."""
    return list(ChatMessage.objects.filter(session__pk=session_id).order_by("sequence"))


def context_snapshot_get(*, session_id: uuid.UUID | str) -> ContextSnapshot | None:
    return ContextSnapshot.objects.filter(session__pk=session_id).first()


def memory_search(*, user: Any, query: str = "", limit: int = 20) -> list[Memory]:
    """The user's memories, newest first; with a query, those containing any of its words."""
    rows = Memory.objects.filter(user=user)
    words = [word for word in query.split() if len(word) > 1][:10]
    if words:
        condition = Q()
        for word in words:
            condition |= Q(content__icontains=word)
        rows = rows.filter(condition)
    return list(rows.order_by("-created_at", "-pk")[:limit])


def message_search_for_user(*, user: Any, query: str, limit: int = 10) -> list[ChatMessage]:
    """The user's own user/assistant rows containing ``query`` (system notices excluded), newest first."""
    return list(
        ChatMessage.objects.filter(
            session__user=user,
            role__in=[ChatMessage.Role.USER, ChatMessage.Role.ASSISTANT],
            content__icontains=query,
        )
        .exclude(content__startswith=COPILOT_SYSTEM_PREFIX)
        .select_related("session")
        .order_by("-created_at", "-pk")[:limit]
    )
