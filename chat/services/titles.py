"""Session title writes: the conditional UPDATE and the cleaning of a generated title."""

from __future__ import annotations

import uuid

from django.db.models import Q

from chat.models import ChatSession

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
