"""Template views: the chat page.

The page is a shell; `static/chat/app.js` loads sessions and messages through the
REST API and follows turns over SSE and the WebSocket.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from copilot_site.accounts.model_choice import advanced_cost_note
from copilot_site.accounts.request_user import authenticated_user

from .errors import SessionNotFound
from .forms import ApprovalThresholdForm
from .models import ChatSession, ModelChoice
from .selectors import session_get_for_user
from .services.approvals import approval_threshold_set


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


@login_required
@require_POST
def approval_threshold_set_view(request: HttpRequest) -> HttpResponse:
    """The account page's approval threshold form; back to the account page with a message."""
    form = ApprovalThresholdForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(e) for e in form.errors.get("threshold_cents", [])) or "Enter a whole number of cents."
        messages.error(request, f"The approval threshold was not saved: {errors}")
        return redirect("account")
    threshold = approval_threshold_set(user=authenticated_user(request), threshold_cents=form.threshold())
    if threshold is None:
        messages.success(request, "Saved: tools no longer ask first because of their price.")
    else:
        messages.success(request, f"Saved: tools costing more than {threshold.threshold_cents}¢ a run ask first.")
    return redirect("account")
