"""Reading share links (`chat.models.SharedChat`): by token for the public page, by owner for the API.

Writes are in `chat.services.shares`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from .errors import ShareNotFound
from .models import SharedChat

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

# secrets.token_urlsafe(32): 43 characters of the URL-safe base64 alphabet.
TOKEN_BYTES = 32
TOKEN_MAX_LENGTH = 64


def share_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def share_get_by_token(*, token: str) -> SharedChat | None:
    """The live share behind ``token``, or None (unknown, revoked, or its chat deleted)."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    return SharedChat.objects.filter(token_hash=share_token_hash(token)).first()


def share_list_for_user(*, user: User, session_id: uuid.UUID | None = None) -> QuerySet[SharedChat]:
    """The user's live shares, newest first; of one chat with ``session_id``."""
    rows = SharedChat.objects.filter(session__user=user)
    if session_id is not None:
        rows = rows.filter(session_id=session_id)
    return rows.order_by("-created_at", "-pk")


def share_get_for_user(*, share_id: uuid.UUID | str, user: User) -> SharedChat:
    """The user's share, or ShareNotFound — the same for a missing id and another user's."""
    try:
        return SharedChat.objects.get(pk=share_id, session__user=user)
    except (SharedChat.DoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise ShareNotFound(share_id) from exc
