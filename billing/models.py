from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models, transaction

from copilot_site.core.caching import cache_delete

from .caching import CONFIG_KEY


class Tier(models.TextChoices):
    """Subscription tiers, in ascending order. ENTERPRISE is granted by staff only."""

    FREE = "FREE", "Free"
    PRO = "PRO", "Pro"
    BUSINESS = "BUSINESS", "Business"
    ENTERPRISE = "ENTERPRISE", "Enterprise"

    @classmethod
    def rank(cls, tier: str) -> int:
        return list(cls.values).index(tier)


class CustomerAccount(models.Model):
    """One per user: subscription tier, its Stripe mirror, and the credit balance.

    `credit_balance_cents` is the running total of the CreditTransaction ledger;
    both are written in one transaction under a row lock on this account.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer_account")
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.FREE)
    credit_balance_cents = models.BigIntegerField(default=0)
    stripe_customer_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_subscription_id = models.CharField(max_length=255, null=True, blank=True)
    subscription_status = models.CharField(max_length=32, blank=True, default="")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    pending_tier = models.CharField(max_length=16, choices=Tier.choices, null=True, blank=True)
    pending_tier_effective_at = models.DateTimeField(null=True, blank=True)
    payment_failed_at = models.DateTimeField(
        null=True, blank=True, help_text="Set by invoice.payment_failed; the account is past due until cleared."
    )
    subscription_synced_at = models.DateTimeField(
        null=True, blank=True, help_text="`created` of the newest Stripe event applied; older events are ignored."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(credit_balance_cents__gte=0), name="billing_balance_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.tier})"

    @property
    def is_past_due(self) -> bool:
        return self.payment_failed_at is not None


class CreditTransaction(models.Model):
    """Append-only credit ledger, in cents (1 credit = 1 cent)."""

    class Kind(models.TextChoices):
        GRANT = "GRANT"
        TOP_UP = "TOP_UP"
        USAGE = "USAGE"
        REFUND = "REFUND"
        DISPUTE = "DISPUTE"
        ADJUSTMENT = "ADJUSTMENT"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_transactions")
    amount_cents = models.BigIntegerField(help_text="Signed: positive adds credits, negative spends them.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.CharField(max_length=255, blank=True, default="")
    balance_after_cents = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=255, unique=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="credit_tx_user_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_cents:+d}¢ for {self.user_id}"


class StripeEvent(models.Model):
    """Every webhook event received, by id: the replay guard and an audit trail."""

    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    api_version = models.CharField(max_length=32, blank=True, default="")
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["type", "-received_at"], name="stripe_event_type_received")]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_event_id}"


class TierChange(models.Model):
    """Audit trail of every tier change applied through ``account_tier_set``."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tier_changes")
    previous_tier = models.CharField(max_length=16, choices=Tier.choices)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    reason = models.CharField(max_length=255)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="tier_change_user_created")]

    def __str__(self) -> str:
        return f"{self.previous_tier} → {self.tier} for {self.user_id}"


class CheckoutRecord(models.Model):
    """One Stripe Checkout Session we opened; its pk derives the Stripe idempotency key.

    Credit top-ups are fulfilled from the webhook at most once per session; the
    payment intent links later refunds and disputes back to the purchase.
    """

    class Kind(models.TextChoices):
        TOP_UP = "TOP_UP"
        SUBSCRIPTION = "SUBSCRIPTION"

    class Status(models.TextChoices):
        CREATED = "CREATED"  # row written, Stripe not called yet (or the call failed)
        OPEN = "OPEN"  # Stripe returned a session and its URL
        FAILED = "FAILED"  # Stripe refused; nothing to pay
        FULFILLED = "FULFILLED"  # paid and applied (credits granted or subscription synced)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="checkouts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    tier = models.CharField(max_length=16, choices=Tier.choices, null=True, blank=True)
    amount_cents = models.BigIntegerField(null=True, blank=True, help_text="Top-up amount requested, in cents.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    stripe_checkout_session_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    amount_paid_cents = models.BigIntegerField(default=0)
    clawed_back_cents = models.BigIntegerField(default=0, help_text="Credits deducted for refunds and lost disputes.")
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="checkout_user_created")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(clawed_back_cents__gte=0)
                & models.Q(clawed_back_cents__lte=models.F("amount_paid_cents")),
                name="billing_checkout_clawback_within_paid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} checkout {self.stripe_checkout_session_id or self.pk} ({self.status})"

    @property
    def stripe_idempotency_key(self) -> str:
        return f"checkout-create-{self.pk}"


class BillingConfig(models.Model):
    """Operator overrides of the billing settings (one row, pk=1); a null field means "use the setting"."""

    enable_platform_payment = models.BooleanField(null=True, blank=True)
    stripe_price_id_pro = models.CharField(max_length=255, null=True, blank=True)
    stripe_price_id_business = models.CharField(max_length=255, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "billing configuration"
        verbose_name_plural = "billing configuration"

    def __str__(self) -> str:
        return "Billing configuration"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pk = 1  # singleton
        super().save(*args, **kwargs)
        # Deleted after commit, so a concurrent reader cannot re-cache the old row.
        transaction.on_commit(lambda: cache_delete(CONFIG_KEY))
