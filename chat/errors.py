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


class MessageNotFound(ChatError):
    status = 404
    code = "not_found"

    def __init__(self, sequence: object) -> None:
        super().__init__(f"Message {sequence} not found in this chat.")


class TurnInProgress(ChatError):
    """Editing, regenerating or switching versions while a reply is being written: refused,
    nothing is saved or changed (the running turn's rows would land on the wrong branch)."""

    status = 409
    code = "turn_in_progress"

    def __init__(self) -> None:
        super().__init__(
            "A reply is still being written in this chat. Stop it or wait until it finishes, then try again.",
            extra={"code": self.code},
        )


class NotEditable(ChatError):
    """A version of this row cannot be made: an edit of an answer, a regenerate of a user message."""

    status = 400
    code = "not_editable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, extra={"code": self.code})


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


class AttachmentNotFound(ChatError):
    """Missing, someone else's, deleted, or not an id at all: the same 404."""

    status = 404
    code = "not_found"

    def __init__(self, attachment_id: object) -> None:
        super().__init__(f"File {attachment_id} not found.")


class UploadTooLarge(ChatError):
    status = 413
    code = "file_too_large"


class UploadQuotaExceeded(ChatError):
    status = 413
    code = "quota_exceeded"


class UploadTypeRefused(ChatError):
    status = 415
    code = "unsupported_type"


class TooManyUploads(ChatError):
    status = 429
    code = "too_many_uploads"


class TooManyFiles(ChatError):
    status = 400
    code = "too_many_files"
