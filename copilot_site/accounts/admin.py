from __future__ import annotations

import functools
from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ApiKey, User
from .sockets import api_key_group, credential_revoked


@admin.register(User)
class UserAdmin(DjangoUserAdmin):  # type: ignore[type-arg]
    pass


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    list_display = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username", "user__email")
    raw_id_fields = ("user",)
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")

    # A key revoked or deleted here closes its open WebSockets (4401), as revoking it on
    # the account page does.
    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.revoked_at is not None:
            _sockets_close_on_commit([obj.pk])

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        key_id = obj.pk
        super().delete_model(request, obj)
        _sockets_close_on_commit([key_id])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        key_ids = list(queryset.values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        _sockets_close_on_commit(key_ids)


def _sockets_close_on_commit(key_ids: list[int]) -> None:
    for key_id in key_ids:
        transaction.on_commit(functools.partial(credential_revoked, api_key_group(key_id)), robust=True)
