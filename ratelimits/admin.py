"""Operator tooling: tier limits, overrides, the per-user usage page and the audit log.

Every change goes through ``ratelimits.services`` and so writes an audit entry.
The per-user usage page hangs off the Daily spend admin
(``/admin/ratelimits/dailyspend/user/<id>/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.forms import Form, ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from copilot_site.accounts.request_user import authenticated_user
from copilot_site.core.admin import ReadOnlyAdmin

from .charts import spend_chart
from .errors import RateLimitError
from .forms import OverrideSetForm, TierLimitAdminForm, TierSetForm, UsageResetForm
from .models import (
    DailySpend,
    PersonalSpendCap,
    RateLimitAuditEntry,
    TierLimit,
    UserLimitOverride,
    format_microdollars,
)
from .selectors import (
    audit_entry_list_for_user,
    daily_spend_series,
    usage_status,
    user_get_by_reference,
)
from .services import (
    limit_override_delete,
    limit_override_set,
    tier_limit_save,
    usage_reset_by_staff,
    user_tier_set,
)

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

# Staff who may change limits (superusers always may).
CHANGE_PERMISSION = "ratelimits.change_userlimitoverride"


def usage_page_url(user_id: int) -> str:
    return reverse("admin:ratelimits_user_usage", args=[user_id])


def _usage_link(user_id: int, text: object) -> str:
    return format_html('<a href="{}">{}</a>', usage_page_url(user_id), text)


@admin.register(TierLimit)
class TierLimitAdmin(admin.ModelAdmin[TierLimit]):
    form = TierLimitAdminForm
    list_display = ("tier", "daily_limit", "weekly_limit", "updated_at")
    ordering = ("pk",)

    @admin.display(description="Daily limit", ordering="daily_limit_microdollars")
    def daily_limit(self, obj: TierLimit) -> str:
        return _limit_text(obj.daily_limit_microdollars)

    @admin.display(description="Weekly limit", ordering="weekly_limit_microdollars")
    def weekly_limit(self, obj: TierLimit) -> str:
        return _limit_text(obj.weekly_limit_microdollars)

    def save_model(self, request: HttpRequest, obj: TierLimit, form: ModelForm[TierLimit], change: bool) -> None:
        tier_limit_save(
            tier_limit=obj, actor=authenticated_user(request), reason=form.cleaned_data.get("change_reason", "")
        )

    def has_delete_permission(self, request: HttpRequest, obj: TierLimit | None = None) -> bool:
        return False  # every tier needs a row; edit it to 0 for "unlimited"


@admin.register(UserLimitOverride)
class UserLimitOverrideAdmin(admin.ModelAdmin[UserLimitOverride]):
    list_display = ("user_link", "daily_limit", "weekly_limit", "reason", "set_by", "updated_at")
    list_select_related = ("user", "set_by")
    raw_id_fields = ("user",)
    readonly_fields = ("set_by", "created_at", "updated_at")
    search_fields = ("user__username", "user__email", "reason")

    @admin.display(description="User", ordering="user__email")
    def user_link(self, obj: UserLimitOverride) -> str:
        return _usage_link(obj.user_id, obj.user)

    @admin.display(description="Daily limit")
    def daily_limit(self, obj: UserLimitOverride) -> str:
        return _limit_text(obj.daily_limit_microdollars)

    @admin.display(description="Weekly limit")
    def weekly_limit(self, obj: UserLimitOverride) -> str:
        return _limit_text(obj.weekly_limit_microdollars)

    def get_readonly_fields(self, request: HttpRequest, obj: UserLimitOverride | None = None) -> tuple[str, ...]:
        # Moving an override to another user would leave the first user's row behind.
        return ("user", *self.readonly_fields) if obj is not None else tuple(self.readonly_fields)

    def save_model(
        self, request: HttpRequest, obj: UserLimitOverride, form: ModelForm[UserLimitOverride], change: bool
    ) -> None:
        saved = limit_override_set(
            user=obj.user,
            daily_microdollars=obj.daily_limit_microdollars,
            weekly_microdollars=obj.weekly_limit_microdollars,
            reason=obj.reason,
            actor=authenticated_user(request),
        )
        if saved is not None:
            obj.pk = saved.pk  # the admin's redirect and log use the saved row

    def delete_model(self, request: HttpRequest, obj: UserLimitOverride) -> None:
        limit_override_delete(override=obj, actor=authenticated_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[UserLimitOverride]) -> None:
        for override in queryset:
            limit_override_delete(override=override, actor=authenticated_user(request))


@admin.register(PersonalSpendCap)
class PersonalSpendCapAdmin(ReadOnlyAdmin):
    """Users set their own caps on the account page; staff only look."""

    list_display = ("user_link", "daily_cap", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email")

    @admin.display(description="User", ordering="user__email")
    def user_link(self, obj: PersonalSpendCap) -> str:
        return _usage_link(obj.user_id, obj.user)

    @admin.display(description="Daily cap", ordering="daily_cap_microdollars")
    def daily_cap(self, obj: PersonalSpendCap) -> str:
        return format_microdollars(obj.daily_cap_microdollars)


@admin.register(RateLimitAuditEntry)
class RateLimitAuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "user_link", "actor", "reason")
    list_select_related = ("user", "actor")
    list_filter = ("action",)
    search_fields = ("user__email", "user__username", "actor__email", "reason")
    readonly_fields = ("created_at", "action", "user", "actor", "details", "reason")

    @admin.display(description="User", ordering="user__email")
    def user_link(self, obj: RateLimitAuditEntry) -> str:
        return _usage_link(obj.user_id, obj.user) if obj.user_id else "—"


@admin.register(DailySpend)
class DailySpendAdmin(ReadOnlyAdmin):
    """Durable daily totals; each user links to their usage page (reset, tier, override)."""

    change_list_template = "admin/ratelimits/dailyspend/change_list.html"
    list_display = ("date", "user_link", "spend", "turn_count")
    list_select_related = ("user",)
    list_filter = ("date",)
    search_fields = ("user__username", "user__email")
    date_hierarchy = "date"
    ordering = ("-date", "-microdollars")

    @admin.display(description="User", ordering="user__email")
    def user_link(self, obj: DailySpend) -> str:
        return _usage_link(obj.user_id, obj.user)

    @admin.display(description="Spend", ordering="microdollars")
    def spend(self, obj: DailySpend) -> str:
        return format_microdollars(obj.microdollars)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("user/", wrap(self.user_lookup_view), name="ratelimits_user_lookup"),
            path("user/<int:user_id>/", wrap(self.user_usage_view), name="ratelimits_user_usage"),
            path(
                "user/<int:user_id>/<str:action>/",
                wrap(require_POST(self.user_action_view)),
                name="ratelimits_user_action",
            ),
            *super().get_urls(),
        ]

    # --- the per-user usage page -------------------------------------------------------

    def user_lookup_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        reference = request.GET.get("q", "").strip()
        try:
            user = user_get_by_reference(reference=reference)
        except RateLimitError:
            self.message_user(request, f"No user with id or email {reference!r}.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:ratelimits_dailyspend_changelist"))
        return HttpResponseRedirect(usage_page_url(user.pk))

    def user_usage_view(self, request: HttpRequest, user_id: int, forms: dict[str, Form] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        user = _get_user(user_id)
        status = usage_status(user=user)
        limits = status.limits
        series = daily_spend_series(user=user, days=30)
        forms = forms or {}
        context = {
            **self.admin_site.each_context(request),
            "title": f"Usage of {user.get_username()}",
            "opts": self.model._meta,
            "subject": user,
            "status": status,
            "limits": limits,
            "rows": [
                _window_row("Today", status.daily.used, limits.account_daily, status.daily.resets_at),
                _window_row("This week", status.weekly.used, limits.account_weekly, status.weekly.resets_at),
            ],
            "override": UserLimitOverride.objects.filter(user=user).select_related("set_by").first(),
            "personal_cap": (
                format_microdollars(limits.personal_daily_cap) if limits.personal_daily_cap is not None else None
            ),
            "chart": spend_chart(series, daily_limit=limits.account_daily),
            "spend_rows": [
                {"date": day.date, "spend": format_microdollars(day.microdollars), "turns": day.turn_count}
                for day in reversed(series)
                if day.turn_count or day.microdollars
            ],
            "audit_entries": audit_entry_list_for_user(user=user),
            "turns_url": _turn_usage_changelist_url(user.pk),
            "can_change": _can_change(request),
            "reset_form": forms.get("reset") or UsageResetForm(),
            "tier_form": forms.get("set-tier") or TierSetForm(initial={"tier": limits.tier}),
            "override_form": forms.get("set-override") or OverrideSetForm(initial=_override_initial(user)),
        }
        return TemplateResponse(request, "admin/ratelimits/user_usage.html", context)

    def user_action_view(self, request: HttpRequest, user_id: int, action: str) -> HttpResponse:
        if not _can_change(request):
            raise PermissionDenied
        user = _get_user(user_id)
        form: Form
        if action in ("reset-daily", "reset-weekly"):
            form = UsageResetForm(request.POST)
            if not form.is_valid():
                return self.user_usage_view(request, user_id, forms={"reset": form})
            try:
                usage_reset_by_staff(
                    user=user,
                    actor=authenticated_user(request),
                    include_weekly=action == "reset-weekly",
                    reason=form.cleaned_data["reason"],
                )
            except RateLimitError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                windows = "daily and weekly windows" if action == "reset-weekly" else "daily window"
                self.message_user(request, f"Reset the {windows} of {user}.", messages.SUCCESS)
        elif action == "set-tier":
            form = TierSetForm(request.POST)
            if not form.is_valid():
                return self.user_usage_view(request, user_id, forms={"set-tier": form})
            previous = user_tier_set(
                user=user,
                tier=form.cleaned_data["tier"],
                actor=authenticated_user(request),
                reason=form.cleaned_data["reason"],
            )
            self.message_user(request, f"Tier of {user}: {previous} → {form.cleaned_data['tier']}.", messages.SUCCESS)
        elif action == "set-override":
            override_form = OverrideSetForm(request.POST)
            if not override_form.is_valid():
                return self.user_usage_view(request, user_id, forms={"set-override": override_form})
            try:
                saved = limit_override_set(
                    user=user,
                    daily_microdollars=override_form.microdollars("daily_dollars"),
                    weekly_microdollars=override_form.microdollars("weekly_dollars"),
                    reason=override_form.cleaned_data["reason"],
                    actor=authenticated_user(request),
                )
            except ValidationError as exc:
                override_form.add_error(None, exc.messages)
                return self.user_usage_view(request, user_id, forms={"set-override": override_form})
            text = f"Override of {user} saved." if saved else f"Override of {user} removed."
            self.message_user(request, text, messages.SUCCESS)
        else:
            raise PermissionDenied  # unknown action
        return HttpResponseRedirect(usage_page_url(user.pk))


def _limit_text(value: int | None) -> str:
    if value is None:
        return "tier's"
    return "unlimited" if value == 0 else format_microdollars(value)


def _get_user(user_id: int) -> User:
    return get_object_or_404(get_user_model(), pk=user_id)


def _can_change(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(CHANGE_PERMISSION))


def _window_row(label: str, used: int, limit: int, resets_at: Any) -> dict[str, Any]:
    percent = None if limit <= 0 else round(100 * used / limit, 1)
    return {
        "label": label,
        "used": format_microdollars(used),
        "limit": "unlimited" if limit <= 0 else format_microdollars(limit),
        "percent": percent,
        "resets_in": resets_at - timezone.now(),
        "resets_at": resets_at,
    }


def _override_initial(user: User) -> dict[str, Any]:
    override = UserLimitOverride.objects.filter(user=user).first()
    if override is None:
        return {}

    def dollars(value: int | None) -> Any:
        return None if value is None else value / 1_000_000

    return {
        "daily_dollars": dollars(override.daily_limit_microdollars),
        "weekly_dollars": dollars(override.weekly_limit_microdollars),
        "reason": override.reason,
    }


def _turn_usage_changelist_url(user_id: int) -> str | None:
    """chat's per-turn costs, filtered to the user (linked by URL name: ratelimits never imports chat)."""
    try:
        return f"{reverse('admin:chat_turnusage_changelist')}?user__id__exact={user_id}"
    except NoReverseMatch:
        return None
