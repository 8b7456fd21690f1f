"""Chat's exceptions: each fixes the HTTP status and code the API and the WebSocket answer with."""

from __future__ import annotations

from copilot_site.core.errors import ApplicationError


class ChatError(ApplicationError):
    """A chat rule refused the request (mapped by ``copilot_site.core.exceptions``)."""


class SessionNotFound(ChatError):
    status = 404
    code = "not_found"

    def __init__(self, session_id: object) -> None:
        super().__init__(f"Session {session_id} not found.")


class ShareNotFound(ChatError):
    status = 404
    code = "not_found"

    def __init__(self, share_id: object) -> None:
        super().__init__(f"Share {share_id} not found.")
