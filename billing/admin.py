from __future__ import annotations

from django.contrib import admin

from .models import CreditTransaction, CustomerAccount, StripeEvent


@admin.register(CustomerAccount)
class CustomerAccountAdmin(admin.ModelAdmin[CustomerAccount]):
    list_display = ("user", "tier", "credit_balance_cents", "stripe_customer_id", "pending_tier", "payment_failed_at")
    list_select_related = ("user",)
    list_filter = ("tier",)
    search_fields = ("user__username", "user__email", "stripe_customer_id", "stripe_subscription_id")
    raw_id_fields = ("user",)
    # Balance moves only through the ledger; Stripe fields mirror Stripe.
    readonly_fields = (
        "credit_balance_cents", "stripe_customer_id", "stripe_subscription_id", "subscription_status",
        "current_period_end", "pending_tier", "pending_tier_effective_at", "subscription_synced_at",
    )  # fmt: skip


@admin.register(CreditTransaction)
class CreditTransactionAdmin(admin.ModelAdmin[CreditTransaction]):
    list_display = ("created_at", "user", "kind", "amount_cents", "balance_after_cents", "reason")
    list_select_related = ("user",)
    list_filter = ("kind",)
    search_fields = ("user__username", "user__email", "idempotency_key", "reason")
    raw_id_fields = ("user", "created_by")

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False  # append-only ledger

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin[StripeEvent]):
    list_display = ("stripe_event_id", "type", "received_at", "processed_at")
    list_filter = ("type",)
    search_fields = ("stripe_event_id",)
    readonly_fields = ("stripe_event_id", "type", "api_version", "payload", "received_at", "processed_at", "error")
