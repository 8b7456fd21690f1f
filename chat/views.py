"""Template views: the chat page.

The page is a shell; `static/chat/app.js` loads sessions and messages through the
REST API and follows turns over SSE and the WebSocket.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from copilot_site.accounts.model_choice import advanced_cost_note
from copilot_site.accounts.request_user import authenticated_user

from .errors import SessionNotFound
from .models import ChatSession, ModelChoice
from .selectors import session_get_for_user


def _get_session_for_user(request: HttpRequest, session_id: str) -> ChatSession:
    """The user's session, or 404 — the same for a missing id and for someone else's."""
    try:
        return session_get_for_user(session_id=session_id, user=authenticated_user(request))
    except SessionNotFound as exc:
        raise Http404("No such chat.") from exc


@login_required
def chat_page(request: HttpRequest, session_id: str | None = None) -> HttpResponse:
    """`/copilot` (a new chat, or `?sessionId=` for an existing one) and `/chat/<id>/`."""
    wanted = str(session_id) if session_id else request.GET.get("sessionId", "").strip()
    session = _get_session_for_user(request, wanted) if wanted else None
    user = authenticated_user(request)
    return render(
        request,
        "chat/chat.html",
        {
            "chat_session": session,
            "advanced_cost_note": advanced_cost_note(),
            "default_model": user.chat_model or ModelChoice.STANDARD,
            "default_mode": user.chat_mode or settings.COPILOT_DEFAULT_MODE,
        },
    )
