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


class ApprovalNotFound(ChatError):
    """No such approval in the user's chat: identical for missing and foreign ids."""

    status = 404
    code = "not_found"

    def __init__(self, approval_id: object) -> None:
        super().__init__(f"Approval {approval_id} not found.")


class ApprovalAlreadyDecided(ChatError):
    """The tool call is no longer waiting: decided before, timed out, or its turn was stopped."""

    status = 409
    code = "approval_decided"

    def __init__(self, status: str) -> None:
        texts = {
            "approved": "This tool call was already approved.",
            "denied": "This tool call was already denied.",
            "expired": "This tool call is no longer waiting: nobody answered in time, so it was denied.",
            "cancelled": "This tool call is no longer waiting: its reply was stopped.",
        }
        super().__init__(texts.get(status, "This tool call is no longer waiting."), extra={"status": status})
