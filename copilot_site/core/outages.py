"""What a request answers while the database or Redis is unavailable.

An outage is a ``django.db`` ``OperationalError``/``InterfaceError`` (the database
is down, the connection was terminated, SQLite is locked past its timeout) or a
``redis`` ``ConnectionError``/``TimeoutError``, raised directly or as the cause of
another exception. The API answers ``503 {"detail", "code"}`` with ``Retry-After``;
pages answer the plain ``503.html`` page, rendered without the request so that
no context processor touches the failing service.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from rest_framework.exceptions import APIException

from .errors import ApplicationError

DATABASE_UNAVAILABLE = "database_unavailable"
REDIS_UNAVAILABLE = "redis_unavailable"

# Seconds a client waits before retrying: a restart or fail-over of either service
# takes a few seconds.
OUTAGE_RETRY_AFTER_S = 5

OUTAGE_DETAILS = {
    DATABASE_UNAVAILABLE: "The database is unavailable right now. Try again in a few seconds.",
    REDIS_UNAVAILABLE: "The message store is unavailable right now. Try again in a few seconds.",
}

_DATABASE_ERRORS = (OperationalError, InterfaceError)
_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def outage_code(exc: BaseException | None) -> str | None:
    """``database_unavailable`` or ``redis_unavailable`` when `exc` (or an exception it was
    raised from) is an outage of that service; None for any other exception. An error that
    carries its own answer (an application error with ``http_status``, a DRF exception)
    keeps it, whatever caused it."""
    if exc is not None and (
        isinstance(exc, ApplicationError | APIException) or getattr(exc, "http_status", None) is not None
    ):
        return None
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _DATABASE_ERRORS):
            return DATABASE_UNAVAILABLE
        if isinstance(exc, _REDIS_ERRORS):
            return REDIS_UNAVAILABLE
        exc = exc.__cause__ or exc.__context__
    return None


def outage_body(code: str) -> dict[str, Any]:
    return {"detail": OUTAGE_DETAILS[code], "code": code}


def outage_json_response(code: str) -> JsonResponse:
    response = JsonResponse(outage_body(code), status=503)
    response["Retry-After"] = str(OUTAGE_RETRY_AFTER_S)
    return response


def outage_page_response(code: str) -> HttpResponse:
    page = loader.get_template("503.html").render({"detail": OUTAGE_DETAILS[code]})
    response = HttpResponse(page, status=503)
    response["Retry-After"] = str(OUTAGE_RETRY_AFTER_S)
    return response


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


def outage_response(request: HttpRequest, exc: BaseException | None) -> HttpResponse | None:
    """The 503 answer to a request that failed with `exc`; None when `exc` is no outage."""
    code = outage_code(exc)
    if code is None:
        return None
    return outage_json_response(code) if is_api_path(request.path) else outage_page_response(code)
