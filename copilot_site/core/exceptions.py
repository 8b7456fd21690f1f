"""One error path for the API.

Apps raise their own exceptions (billing cannot import a shared module above it);
any exception carrying ``http_status`` and ``message`` is mapped here, alongside
Django's ``ValidationError``. Views never build error JSON by hand.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(getattr(exc, "message_dict", None) or exc.messages)
    status = getattr(exc, "http_status", None)
    message = getattr(exc, "message", None)
    if isinstance(status, int) and isinstance(message, str):
        body: dict[str, Any] = {"detail": message}
        extra = getattr(exc, "extra", None)
        if isinstance(extra, dict):
            body.update(extra)
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if isinstance(retry_after, int) else None
        return Response(body, status=status, headers=headers)
    return exception_handler(exc, context)
