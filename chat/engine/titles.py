"""Session titles generated from the first user message by the title model.

The task `chat.generate_title` runs this on the worker; the call goes through the
process's shared event loop, so it reuses the warm HTTP client of the turns.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings

from chat.engine.providers import get_provider
from chat.models import ChatMessage, ChatSession
from chat.services.titles import TITLE_SYSTEM_PROMPT, clean_title, session_title_set_if_empty
from chat.turns.loop import shared_loop
from copilot_site.core.sql import connection_release


async def _complete(messages: list[dict[str, Any]], model: str) -> str:
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
    # On the process's shared loop, so the title call reuses the warm HTTP client.
    connection_release()  # this thread only waits for the title model
    raw = shared_loop.run(_complete(messages, settings.COPILOT_TITLE_MODEL))
    title = clean_title(raw)
    if not title:
        return None
    if not session_title_set_if_empty(session_id=session_id, title=title):
        return None
    return title
