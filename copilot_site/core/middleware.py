"""Request id on every request and response; Redis and database failures counted."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponseBase

from . import metrics
from .logs import request_id_var, request_var

REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy's or client's id may look like to be kept: short, and nothing that could
# break a log line or a header (letters, digits, `.`, `_`, `-`; at most 64).
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_for(incoming: str | None) -> str:
    """The incoming id when it is valid, else a new one (32 hex digits)."""
    if incoming and _VALID_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Takes ``X-Request-ID`` (or makes one), puts it in the log context, returns it.

    First in MIDDLEWARE, so every response carries the header, redirects and
    errors included. It also counts a Redis or database exception that escaped a view.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        request_id = self._start(request)
        response: HttpResponseBase = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        request_id = self._start(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    @staticmethod
    def _start(request: HttpRequest) -> str:
        request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        request_id_var.set(request_id)
        request_var.set(request)
        return request_id

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        metrics.failure_count(exception)


def _log_context_clear(**kwargs: Any) -> None:
    """The request is over (its response closed): later lines of this thread are not about it.

    Not done when the middleware returns: Django logs a 4xx/5xx response after that, and
    that line should still name its request.
    """
    request_id_var.set(None)
    request_var.set(None)


request_finished.connect(_log_context_clear, dispatch_uid="copilot_log_context_clear")
