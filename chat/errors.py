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
