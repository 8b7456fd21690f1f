from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .models import ApiKey, User
from .sockets import api_key_group, credential_revoked


class ApiKeyLimitReached(Exception):
    """The user already has COPILOT_USER_MAX_API_KEYS active keys: HTTP 429 with `Retry-After`.

    Shaped like the apps' errors (status, code, detail, extra); accounts sits below
    the shared error module, so it does not subclass it.
    """

    status = 429
    code = "too_many_api_keys"

    def __init__(self, limit: int) -> None:
        self.detail = f"You already have {limit} active API keys, the most allowed. Revoke one to create another."
        super().__init__(self.detail)
        self.extra = {"code": self.code}
        self.retry_after = API_KEY_LIMIT_RETRY_AFTER_S


# A key slot frees only when the user revokes a key; this is when to look again.
API_KEY_LIMIT_RETRY_AFTER_S = 60


@transaction.atomic
def api_key_create(*, user: User, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never stored or shown again.

    Raises ApiKeyLimitReached when the user already holds COPILOT_USER_MAX_API_KEYS
    active keys (0 = no cap). The user row is locked first, so concurrent creations
    of one user count one after the other.
    """
    limit = settings.COPILOT_USER_MAX_API_KEYS
    if limit > 0:
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= limit:
            raise ApiKeyLimitReached(limit)
    raw = ApiKey.RAW_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user,
        name=name.strip() or "API key",
        prefix=raw[: len(ApiKey.RAW_PREFIX) + 6],
        key_hash=ApiKey.hash_key(raw),
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, user: User, key_id: int) -> bool:
    """Revoke one of `user`'s keys. False when it is not theirs or already revoked."""
    updated = ApiKey.objects.filter(pk=key_id, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if updated == 1:
        # Open WebSockets authenticated by this key close with 4401.
        transaction.on_commit(lambda: credential_revoked(api_key_group(key_id)), robust=True)
    return updated == 1


def api_key_touch(*, key: ApiKey) -> None:
    """Record use at most once a minute (avoids a write per request)."""
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False) -> User:
    user_model = get_user_model()
    user = user_model(username=username, email=email, is_staff=is_staff)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


def user_chat_defaults_set(*, user: User, model: str, mode: str) -> None:
    """The model and mode new chats start with ("": the site's default)."""
    user.chat_model, user.chat_mode = model, mode
    user.save(update_fields=["chat_model", "chat_mode"])
