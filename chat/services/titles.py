"""Session titles generated from the first user message (SPEC 4.19)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.db.models import Q

from chat.models import ChatMessage, ChatSession

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 80
TITLE_SYSTEM_PROMPT = (
    "Write a short title (at most six words) for a chat that starts with the user's message below. "
    "Answer with the title only: no quotes, no trailing punctuation."
)


def session_title_set_if_empty(*, session_id: uuid.UUID | str, title: str) -> bool:
    """Set the title only while it is still empty (one conditional UPDATE); False if it was not."""
    updated = ChatSession.objects.filter(pk=session_id).filter(Q(title__isnull=True) | Q(title="")).update(title=title)
    return updated > 0


def clean_title(raw: str) -> str:
    """Trim whitespace and wrapping quotes, then cut to 80 characters."""
    title = " ".join(raw.split()).strip().strip("\"'“”‘’").strip()
    return title[:TITLE_MAX_CHARS].rstrip()


async def _complete(messages: list[dict[str, Any]], model: str) -> str:
    from chat.engine.providers import get_provider

    provider = get_provider()
    try:
        return await provider.complete(messages=messages, model=model)
    finally:
        await provider.aclose()


def session_title_generate(*, session_id: uuid.UUID | str) -> str | None:
    """Ask the title model for a title and save it if the session still has none.

    Returns the saved title, or None when nothing was saved. Never touches messages.
    """
    session = ChatSession.objects.filter(pk=session_id).first()
    if session is None or session.title:
        return None
    first = (
        ChatMessage.objects.filter(session__pk=session_id, role=ChatMessage.Role.USER)
        .order_by("sequence")
        .values_list("content", flat=True)
        .first()
    )
    if not first:
        return None
    messages = [
        {"role": "system", "content": TITLE_SYSTEM_PROMPT},
        {"role": "user", "content": first[:4000]},
    ]
    from chat.turns.runtime import shared_loop

    # On the process's shared loop, so the title call reuses the warm HTTP client.
    raw = shared_loop.run(_complete(messages, settings.COPILOT_TITLE_MODEL))
    title = clean_title(raw)
    if not title:
        return None
    if not session_title_set_if_empty(session_id=session_id, title=title):
        return None
    return title
