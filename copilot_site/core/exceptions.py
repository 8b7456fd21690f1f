"""One error path: the API's exception handler and the WebSocket's error frames.

Services raise an ``ApplicationError`` subclass; ``error_response_body`` is the
one table from such an error to its HTTP status and JSON body
(``{"detail": …, **extra}``), and ``error_frame`` is the same error as a
WebSocket frame. Django's ``ValidationError`` becomes DRF's, so both validation
paths answer in DRF's format. Views never build error JSON by hand.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .errors import ApplicationError

# The one WebSocket frame that is not an ``error`` frame: a refused turn tells the
# client which window is full and when it resets, so the composer can count down.
RATE_LIMITED_CODE = "rate_limited"


def error_response_body(exc: ApplicationError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of an application error: ``{"detail": …, **extra}``."""
    return exc.status, {"detail": exc.detail, **exc.extra}


def error_frame(exc: ApplicationError) -> dict[str, Any]:
    """The WebSocket frame of an application error, built from the same body as the HTTP answer.

    ``{"type": "rate_limited", "window", "resets_at"}`` for a full rate-limit
    window, else ``{"type": "error", "code", "message"}``.
    """
    _status, body = error_response_body(exc)
    if exc.code == RATE_LIMITED_CODE:
        return {"type": "rate_limited", "window": body["window"], "resets_at": body["resets_at"]}
    return {"type": "error", "code": exc.code, "message": body["detail"]}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        status, body = error_response_body(exc)
        return Response(body, status=status, headers=exc.headers or None)
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(getattr(exc, "message_dict", None) or exc.messages)
    return exception_handler(exc, context)
