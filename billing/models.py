from __future__ import annotations

from django.conf import settings
from django.db import models


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
            models.CheckConstraint(condition=models.Q(credit_balance_cents__gte=0), name="billing_balance_not_negative"),
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
