"""Staff tooling: accounts (tier, Stripe mirror, balance), the read-only ledger, Stripe events.

Every action goes through a service: tiers through ``account_tier_set``, credits
through the ledger services, events through ``webhooks.event_reprocess``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from copilot_site.accounts.request_user import authenticated_user
from copilot_site.core.admin import ReadOnlyAdmin

from . import stripe_gateway
from .errors import BillingError
from .models import BillingConfig, CheckoutRecord, CreditTransaction, CustomerAccount, StripeEvent, Tier, TierChange
from .services import account_tier_set, credits_adjust, credits_grant
from .webhooks import event_reprocess

# --- intermediate forms ---------------------------------------------------------------------


class _ActionForm(forms.Form):
    # Generated when the form is first shown: submitting it twice applies once.
    idempotency_token = forms.CharField(widget=forms.HiddenInput)


class SetTierForm(_ActionForm):
    tier = forms.ChoiceField(choices=Tier.choices)
    reason = forms.CharField(max_length=255)


class GrantCreditsForm(_ActionForm):
    amount_cents = forms.IntegerField(min_value=1, help_text="Credits to add, in cents.")
    reason = forms.CharField(max_length=255)


class AdjustCreditsForm(_ActionForm):
    amount_cents = forms.IntegerField(help_text="Signed cents: negative removes credits (not below zero).")
    reason = forms.CharField(max_length=255)

    def clean_amount_cents(self) -> int:
        amount: int = self.cleaned_data["amount_cents"]
        if amount == 0:
            raise forms.ValidationError("The adjustment must not be zero.")
        return amount


def _intermediate(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[CustomerAccount],
    *,
    form_class: type[_ActionForm],
    title: str,
    apply: Callable[[CustomerAccount, dict[str, Any]], str],
) -> HttpResponse | None:
    """Show ``form_class`` for the selected accounts; on "apply", run ``apply`` on each."""
    action = request.POST.get("action", "")
    if "apply" in request.POST:
        form = form_class(request.POST)
        if form.is_valid():
            done = 0
            for account in queryset.select_related("user"):
                try:
                    summary = apply(account, form.cleaned_data)
                except (BillingError, ValueError) as exc:
                    message = exc.detail if isinstance(exc, BillingError) else str(exc)
                    modeladmin.message_user(request, f"{account.user}: {message}", messages.ERROR)
                    continue
                modeladmin.message_user(request, f"{account.user}: {summary}", messages.SUCCESS)
                done += 1
            if done:
                modeladmin.message_user(request, f"{title}: {done} account(s) updated.", messages.INFO)
            return None
    else:
        form = form_class(initial={"idempotency_token": uuid.uuid4().hex})
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "action": action,
        "accounts": queryset.select_related("user"),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "billing/admin/account_action.html", context)


# --- accounts ------------------------------------------------------------------------------------


@admin.register(CustomerAccount)
class CustomerAccountAdmin(admin.ModelAdmin[CustomerAccount]):
    list_display = (
        "user", "tier", "credit_balance_cents", "pending_change", "stripe_customer_id", "subscription_status",
        "payment_failed_at", "stripe_link",
    )  # fmt: skip
    list_select_related = ("user",)
    list_filter = ("tier", "subscription_status", "pending_tier")
    search_fields = ("user__username", "user__email", "stripe_customer_id", "stripe_subscription_id")
    raw_id_fields = ("user",)
    # Tier and balance move only through actions (services); Stripe fields mirror Stripe.
    readonly_fields = (
        "tier", "credit_balance_cents", "stripe_customer_id", "stripe_subscription_id", "subscription_status",
        "current_period_start", "current_period_end", "pending_tier", "pending_tier_effective_at",
        "payment_failed_at", "subscription_synced_at", "stripe_link", "created_at", "updated_at",
    )  # fmt: skip
    actions = ("action_set_tier", "action_grant_credits", "action_adjust_credits")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are created on first use

    def get_readonly_fields(self, request: HttpRequest, obj: CustomerAccount | None = None) -> tuple[str, ...]:
        return ("user", *self.readonly_fields)

    @admin.display(description="Pending change")
    def pending_change(self, obj: CustomerAccount) -> str:
        if not obj.pending_tier:
            return "—"
        when = obj.pending_tier_effective_at.date().isoformat() if obj.pending_tier_effective_at else "?"
        return f"{obj.pending_tier} on {when}"

    @admin.display(description="Stripe")
    def stripe_link(self, obj: CustomerAccount) -> str:
        if not obj.stripe_customer_id:
            return "—"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">Open in Stripe</a>',
            stripe_gateway.dashboard_url("customers", obj.stripe_customer_id),
        )

    @admin.action(description="Set tier…", permissions=["change"])
    def action_set_tier(self, request: HttpRequest, queryset: QuerySet[CustomerAccount]) -> HttpResponse | None:
        def apply(account: CustomerAccount, data: dict[str, Any]) -> str:
            account_tier_set(
                user=account.user, tier=data["tier"], reason=data["reason"], actor=authenticated_user(request)
            )
            return f"tier set to {data['tier']}"

        return _intermediate(self, request, queryset, form_class=SetTierForm, title="Set tier", apply=apply)

    @admin.action(description="Grant credits…", permissions=["change"])
    def action_grant_credits(self, request: HttpRequest, queryset: QuerySet[CustomerAccount]) -> HttpResponse | None:
        def apply(account: CustomerAccount, data: dict[str, Any]) -> str:
            balance = credits_grant(
                user=account.user,
                amount_cents=data["amount_cents"],
                idempotency_key=f"admin-grant:{data['idempotency_token']}:{account.pk}",
                reason=data["reason"],
                created_by=authenticated_user(request),
            )
            return f"granted {data['amount_cents']} cents, balance {balance}"

        return _intermediate(self, request, queryset, form_class=GrantCreditsForm, title="Grant credits", apply=apply)

    @admin.action(description="Adjust credits…", permissions=["change"])
    def action_adjust_credits(self, request: HttpRequest, queryset: QuerySet[CustomerAccount]) -> HttpResponse | None:
        def apply(account: CustomerAccount, data: dict[str, Any]) -> str:
            balance = credits_adjust(
                user=account.user,
                amount_cents=data["amount_cents"],
                reason=data["reason"],
                actor=authenticated_user(request),
                idempotency_key=f"admin-adjust:{data['idempotency_token']}:{account.pk}",
            )
            return f"adjusted by {data['amount_cents']} cents, balance {balance}"

        return _intermediate(self, request, queryset, form_class=AdjustCreditsForm, title="Adjust credits", apply=apply)


# --- the ledger and audit trails (read-only) ----------------------------------------------------------


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user", "kind", "amount_cents", "balance_after_cents", "reason", "created_by")
    list_select_related = ("user", "created_by")
    list_filter = ("kind", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("user__username", "user__email", "idempotency_key", "reason")
    raw_id_fields = ("user", "created_by")


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user", "previous_tier", "tier", "reason", "actor")
    list_select_related = ("user", "actor")
    list_filter = ("tier",)
    search_fields = ("user__username", "user__email", "reason")


@admin.register(CheckoutRecord)
class CheckoutRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at", "user", "kind", "tier", "amount_cents", "status", "amount_paid_cents", "clawed_back_cents",
    )  # fmt: skip
    list_select_related = ("user",)
    list_filter = ("kind", "status")
    search_fields = ("user__username", "user__email", "stripe_checkout_session_id", "stripe_payment_intent_id")


# --- Stripe events --------------------------------------------------------------------------------------


class ProcessingStatusFilter(admin.SimpleListFilter):
    title = "processing status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("processed", "Processed"), ("failed", "Failed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "processed":
            return queryset.filter(processed_at__isnull=False)
        if self.value() == "failed":
            return queryset.filter(processed_at__isnull=True)
        return queryset


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ("stripe_event_id", "type", "received_at", "processing_status", "processed_at")
    list_filter = (ProcessingStatusFilter, "type")
    search_fields = ("stripe_event_id", "type")
    readonly_fields = ("stripe_event_id", "type", "api_version", "payload", "received_at", "processed_at", "error")
    actions = ("action_reprocess",)

    @admin.display(description="Status")
    def processing_status(self, obj: StripeEvent) -> str:
        if obj.processed_at is not None:
            return "processed"
        return "failed" if obj.error else "pending"

    @admin.action(description="Reprocess failed events")
    def action_reprocess(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        for row in queryset:
            try:
                outcome = event_reprocess(row)
            except Exception as exc:
                self.message_user(
                    request, f"{row.stripe_event_id}: failed again ({type(exc).__name__})", messages.ERROR
                )
                continue
            self.message_user(request, f"{row.stripe_event_id}: {outcome}", messages.SUCCESS)


@admin.register(BillingConfig)
class BillingConfigAdmin(admin.ModelAdmin[BillingConfig]):
    list_display = (
        "__str__",
        "enable_platform_payment",
        "stripe_price_id_pro",
        "stripe_price_id_business",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not BillingConfig.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
