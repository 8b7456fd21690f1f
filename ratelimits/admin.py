from __future__ import annotations

from django.contrib import admin

from .models import TierLimit, UserLimitOverride


@admin.register(TierLimit)
class TierLimitAdmin(admin.ModelAdmin[TierLimit]):
    list_display = ("tier", "daily_limit_microdollars", "weekly_limit_microdollars", "updated_at")


@admin.register(UserLimitOverride)
class UserLimitOverrideAdmin(admin.ModelAdmin[UserLimitOverride]):
    list_display = ("user", "daily_limit_microdollars", "weekly_limit_microdollars", "reason", "set_by", "updated_at")
    list_select_related = ("user", "set_by")
    raw_id_fields = ("user", "set_by")
    search_fields = ("user__username", "user__email", "reason")
