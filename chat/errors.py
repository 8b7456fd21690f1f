from __future__ import annotations

from typing import Any


class ChatError(Exception):
    """A business-rule rejection with its HTTP status (mapped by the API exception handler)."""

    http_status = 400

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class SessionNotFound(ChatError):
    http_status = 404

    def __init__(self, session_id: object) -> None:
        super().__init__(f"Session {session_id} not found.")
