from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from billing.models import Tier


class TierLimit(models.Model):
    """Daily and weekly spend limits of one tier, in microdollars (0 = unlimited)."""

    tier = models.CharField(max_length=16, choices=Tier.choices, unique=True)
    daily_limit_microdollars = models.BigIntegerField(validators=[MinValueValidator(0)])
    weekly_limit_microdollars = models.BigIntegerField(validators=[MinValueValidator(0)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(daily_limit_microdollars__gte=0, weekly_limit_microdollars__gte=0),
                name="ratelimits_tierlimit_not_negative",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tier}: {self.daily_limit_microdollars}/{self.weekly_limit_microdollars} µ$"


class UserLimitOverride(models.Model):
    """Per-user limits that replace the tier's; a null window keeps the tier's value."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="limit_override")
    daily_limit_microdollars = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    weekly_limit_microdollars = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    reason = models.CharField(max_length=255)
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    (models.Q(daily_limit_microdollars__isnull=True) | models.Q(daily_limit_microdollars__gte=0))
                    & (models.Q(weekly_limit_microdollars__isnull=True) | models.Q(weekly_limit_microdollars__gte=0))
                ),
                name="ratelimits_override_not_negative",
            )
        ]

    def __str__(self) -> str:
        return f"override for {self.user_id}"
