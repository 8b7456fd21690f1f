from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from .models import ApiKey, User


def api_key_create(*, user: User, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never stored or shown again."""
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
