"""Sockets whose credential ends while they are open.

A WebSocket is authenticated by an API key or by a session. The consumer
remembers which (`socket_credential`), joins that credential's group
(`auth_group`) and re-checks the credential on every frame it receives
(`credential_is_valid`). Revoking a key and logging out send `AUTH_REVOKED_MESSAGE`
to the group (`credential_revoked`); the consumer then closes with 4401.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.utils.crypto import constant_time_compare

from .models import ApiKey, User

logger = logging.getLogger(__name__)

# The group message a revoked key's or logged-out session's sockets get.
AUTH_REVOKED_MESSAGE = {"type": "auth.revoked"}


@dataclass(frozen=True)
class SocketCredential:
    """What authenticated a socket: an API key (by id) or a session (by key)."""

    api_key_id: int | None = None
    session_key: str | None = None


def _session_digest(session_key: str) -> str:
    # Group names end up in Redis key names: never the session key itself.
    return hashlib.sha256(session_key.encode()).hexdigest()[:40]


def api_key_group(key_id: int) -> str:
    return f"auth_key_{key_id}"


def session_group(session_key: str) -> str:
    return f"auth_session_{_session_digest(session_key)}"


def socket_credential(scope: dict[str, Any]) -> SocketCredential | None:
    """The credential of an authenticated socket's scope; None when there is none to watch."""
    credential = scope.get("auth_credential")
    if isinstance(credential, SocketCredential):
        return credential
    session = scope.get("session")
    session_key = getattr(session, "session_key", None)
    return SocketCredential(session_key=session_key) if session_key else None


def auth_group(credential: SocketCredential) -> str:
    if credential.api_key_id is not None:
        return api_key_group(credential.api_key_id)
    assert credential.session_key is not None
    return session_group(credential.session_key)


def credential_is_valid(credential: SocketCredential, user: User) -> bool:
    """Is the socket's key still active (one query), or its session still signed in as
    `user` with the user's current password (two: a password change ends the user's other
    sessions, as Django's session auth hash does for HTTP)?"""
    if credential.api_key_id is not None:
        return ApiKey.objects.filter(
            pk=credential.api_key_id, user_id=user.pk, revoked_at__isnull=True, user__is_active=True
        ).exists()
    store = import_module(settings.SESSION_ENGINE).SessionStore(credential.session_key)
    if store.get(SESSION_KEY) != str(user.pk):
        return False
    current = User.objects.filter(pk=user.pk, is_active=True).first()
    session_hash = store.get(HASH_SESSION_KEY)
    return bool(
        current is not None
        and isinstance(session_hash, str)
        and constant_time_compare(session_hash, current.get_session_auth_hash())
    )


def credential_revoked(group: str) -> None:
    """Tell the sockets of a credential that it ended (best effort: they re-check each frame anyway)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, dict(AUTH_REVOKED_MESSAGE))
    except Exception:  # noqa: BLE001 - revocation itself has happened; sockets re-check on their next frame
        logger.warning("Could not tell the sockets of %s that their credential ended", group, exc_info=True)
