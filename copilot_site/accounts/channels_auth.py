"""WebSocket authentication: the session cookie, or `Authorization: Bearer <api key>`;
and the Origin check that guards the cookie.

A socket authenticated by a key carries `scope["auth_credential"]` (the key's id),
so the consumer can watch that key (see `sockets`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from .authentication import bearer_token
from .models import ApiKey
from .selectors import api_key_get_active
from .sockets import SocketCredential
from .throttle import api_key_failure_record, api_key_failure_retry_after

# Closing before the handshake is accepted makes daphne answer the upgrade with 403.
WS_THROTTLED_CLOSE_CODE = 4429


@database_sync_to_async  # type: ignore[untyped-decorator]
def _key_for(raw_key: str) -> ApiKey | None:
    return api_key_get_active(raw_key=raw_key)


class ApiKeyAuthMiddleware(BaseMiddleware):  # type: ignore[misc]
    """Runs after the session middleware; a bearer header, when present, decides the user.

    An invalid key leaves the connection anonymous (the consumer closes it with
    4401) rather than silently falling back to a cookie, and counts against the
    client address; an address past the failure limit has its handshake refused
    before its key is looked at (see `throttle`).
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers") or [])
        token = bearer_token(headers.get(b"authorization"))
        if token is not None:
            from django.contrib.auth.models import AnonymousUser

            client_ip = str((scope.get("client") or [""])[0] or "")
            if await sync_to_async(api_key_failure_retry_after)(client_ip=client_ip) is not None:
                return await _refuse_handshake(receive, send)
            key = await _key_for(token)
            if key is None:
                await sync_to_async(api_key_failure_record)(client_ip=client_ip)
                scope = dict(scope, user=AnonymousUser())
            else:
                scope = dict(scope, user=key.user, auth_credential=SocketCredential(api_key_id=key.pk))
        return await super().__call__(scope, receive, send)


async def _refuse_handshake(receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": WS_THROTTLED_CLOSE_CODE})


class SessionScopeMiddleware(BaseMiddleware):  # type: ignore[misc]
    """`scope["session"]`: the session named by the cookie, loaded on first use, for reading.

    Decision: WebSockets never write the session (sign-in and sign-out are HTTP), so
    unlike channels' SessionMiddleware this does not wrap `send`: that wrapper checks
    on every outgoing frame whether the session needs saving: ~6 % of daphne's
    profile samples at 200 live turns.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        store = import_module(settings.SESSION_ENGINE).SessionStore
        key = scope["cookies"].get(settings.SESSION_COOKIE_NAME)
        return await super().__call__(dict(scope, session=store(key)), receive, send)


def ApiKeyOrSessionAuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802 - mirrors AuthMiddlewareStack
    """channels' AuthMiddlewareStack (cookies → session → user), with a read-only session
    and the API key check last."""
    return CookieMiddleware(SessionScopeMiddleware(AuthMiddleware(ApiKeyAuthMiddleware(inner))))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """An origin (`scheme://host[:port]`) as (scheme, host, port), the port made explicit;
    None when it is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _own_origin(scope: dict[str, Any], headers: dict[bytes, bytes]) -> tuple[str, str, int] | None:
    """The handshake's own origin: its scheme (ws → http, wss → https) and its `Host`, when
    that host is in ALLOWED_HOSTS."""
    host = headers.get(b"host", b"").decode("latin1")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    return _origin_key(f"{scheme}://{host}")


def websocket_origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a WebSocket handshake may go on, by its credentials and its `Origin`.

    A handshake carrying `Authorization: Bearer …` needs no `Origin`: browsers cannot set
    that header on a WebSocket, so no other site's page can borrow it (and a bearer header
    never falls back to the cookie, see `ApiKeyAuthMiddleware`). Any other handshake rides
    on the session cookie, so, as Django's CSRF check does for HTTP, its `Origin` must
    match the scheme, host and port of the server's own origin (its `Host`, when allowed
    by ALLOWED_HOSTS) or of one of CSRF_TRUSTED_ORIGINS; a missing or other Origin is
    refused (HTTP 403).
    """
    headers = dict(scope.get("headers") or [])
    if bearer_token(headers.get(b"authorization")) is not None:
        return True
    origin = _origin_key(headers.get(b"origin", b"").decode("latin1"))
    if origin is None:
        return False
    trusted = {_origin_key(o) for o in settings.CSRF_TRUSTED_ORIGINS}
    return origin == _own_origin(scope, headers) or origin in trusted


class WebSocketOriginValidator(BaseMiddleware):  # type: ignore[misc]
    """Refuses a handshake `websocket_origin_allowed` does not allow, before any auth work."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if not websocket_origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await super().__call__(scope, receive, send)
