"""Log context and the JSON log format (``LOG_FORMAT=json``).

Four context variables say what a log line is about: ``request_id`` and the
request (set by ``RequestIdMiddleware`` for each HTTP request), and ``turn_id``,
``session_id`` and ``user_id`` (set by the worker when it runs a turn). Context
variables follow the code into ``sync_to_async`` threads and asyncio tasks, so a
line logged anywhere below those points carries them. ``LogContextFilter`` (on
every handler) copies them onto each record, and ``JsonFormatter`` writes one
JSON object per line: timestamp, level, logger, message, exception and the
context keys that are known.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject, empty

CONTEXT_KEYS = ("request_id", "user_id", "session_id", "turn_id")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
request_var: ContextVar[HttpRequest | None] = ContextVar("request", default=None)
user_id_var: ContextVar[int | None] = ContextVar("user_id", default=None)
session_id_var: ContextVar[str | None] = ContextVar("session_id", default=None)
turn_id_var: ContextVar[str | None] = ContextVar("turn_id", default=None)


def log_context_turn_set(*, turn_id: str, session_id: str, user_id: int) -> None:
    """Name the turn the current task runs (its asyncio task keeps its own copy)."""
    turn_id_var.set(turn_id)
    session_id_var.set(str(session_id))
    user_id_var.set(user_id)


def _request_user_id(request: HttpRequest | None) -> int | None:
    """The request's user id once something has authenticated it, without loading it here.

    A log line must not run a query (it may be on the event loop), so a still-lazy
    ``request.user`` counts as unknown. DRF writes the user it authenticated (API
    key or session) back onto the Django request.
    """
    if request is None:
        return None
    user: Any = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = vars(user).get("_wrapped", empty)  # the user once evaluated, else `empty`
        if user is empty:
            return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return pk if isinstance(pk, int) else None


class LogContextFilter(logging.Filter):
    """Adds ``request_id``, ``user_id``, ``session_id`` and ``turn_id`` (None when unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        user_id = user_id_var.get()
        record.user_id = user_id if user_id is not None else _request_user_id(request_var.get())
        record.session_id = session_id_var.get()
        record.turn_id = turn_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; context keys appear only when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
