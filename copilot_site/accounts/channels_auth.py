"""WebSocket authentication: the session cookie, or `Authorization: Bearer <api key>`."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

from .authentication import bearer_token
from .selectors import api_key_get_active


@database_sync_to_async  # type: ignore[untyped-decorator]
def _user_for_key(raw_key: str) -> Any:
    key = api_key_get_active(raw_key=raw_key)
    return key.user if key is not None else None


class ApiKeyAuthMiddleware(BaseMiddleware):  # type: ignore[misc]
    """Runs after the session middleware; a bearer header, when present, decides the user.

    An invalid key leaves the connection anonymous (the consumer closes it with
    4401) rather than silently falling back to a cookie.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers") or [])
        token = bearer_token(headers.get(b"authorization"))
        if token is not None:
            from django.contrib.auth.models import AnonymousUser

            user = await _user_for_key(token)
            scope = dict(scope, user=user if user is not None else AnonymousUser())
        return await super().__call__(scope, receive, send)


def ApiKeyOrSessionAuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802 - mirrors AuthMiddlewareStack
    return AuthMiddlewareStack(ApiKeyAuthMiddleware(inner))
