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
from rest_framework.views import exception_handler, set_rollback

from .outages import OUTAGE_RETRY_AFTER_S, outage_body, outage_code


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if (code := outage_code(exc)) is not None:
        # The database or Redis is unavailable (also while authenticating): 503, retry soon.
        set_rollback()
        return Response(outage_body(code), status=503, headers={"Retry-After": str(OUTAGE_RETRY_AFTER_S)})
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(getattr(exc, "message_dict", None) or exc.messages)
    status = getattr(exc, "http_status", None)
    message = getattr(exc, "message", None)
    if isinstance(status, int) and isinstance(message, str):
        body: dict[str, Any] = {"detail": message}
        extra = getattr(exc, "extra", None)
        if isinstance(extra, dict):
            body.update(extra)
        return Response(body, status=status)
    return exception_handler(exc, context)
