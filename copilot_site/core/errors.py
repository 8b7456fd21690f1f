"""The one base class of the errors a service raises to refuse a request.

Each subclass fixes the HTTP ``status`` and the machine-readable ``code`` that
the API and the WebSocket consumer answer with; ``detail`` is the sentence shown
to the user, ``extra`` the further fields of the JSON body and ``headers`` the
response headers it needs (``Retry-After`` on a refusal that passes). The mapping to a
response lives in one place, ``copilot_site.core.exceptions``; views and
consumers never build error payloads by hand.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApplicationError(Exception):
    """A business-rule refusal: HTTP ``status``, ``code``, the user-facing ``detail`` and ``extra`` body fields."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "rejected"

    def __init__(
        self, detail: str, *, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = extra or {}
        self.headers: dict[str, str] = headers or {}
