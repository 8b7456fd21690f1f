"""Signal receivers of the accounts app."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .sockets import credential_revoked, session_group


def session_sockets_close(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    """On logout (before the session is flushed), close the WebSockets it authenticated (4401)."""
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None)
    if session_key:
        credential_revoked(session_group(session_key))
