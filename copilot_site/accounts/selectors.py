from __future__ import annotations

from django.db.models import QuerySet

from .models import ApiKey, User


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, with its user, or None."""
    if not raw_key.startswith(ApiKey.RAW_PREFIX):
        return None
    return (
        ApiKey.objects.select_related("user")
        .filter(key_hash=ApiKey.hash_key(raw_key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user).order_by("-created_at")
