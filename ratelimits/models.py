from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from billing.models import Tier
from copilot_site.core.caching import cache_delete_on_commit

from .caching import TIER_LIMITS_KEY, user_limits_key


def format_microdollars(value: int) -> str:
    """`$X.XX`, as the admin shows spend and limits: microdollars ÷ 1,000,000, two decimals."""
    return f"${value / 1_000_000:,.2f}"


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

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        # Every check reads the tier table from the cache; a change applies on commit.
        cache_delete_on_commit(TIER_LIMITS_KEY)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        result = super().delete(*args, **kwargs)
        cache_delete_on_commit(TIER_LIMITS_KEY)
        return result

    def clean(self) -> None:
        _validate_daily_within_weekly(self.daily_limit_microdollars, self.weekly_limit_microdollars)


class UserLimitOverride(models.Model):
    """Per-user limits that replace the tier's; a null window keeps the tier's value."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="limit_override")
    daily_limit_microdollars = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    weekly_limit_microdollars = models.BigIntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    reason = models.CharField(max_length=255)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
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

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        cache_delete_on_commit(user_limits_key(self.user_id))

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        user_id = self.user_id
        result = super().delete(*args, **kwargs)
        cache_delete_on_commit(user_limits_key(user_id))
        return result

    def clean(self) -> None:
        if self.daily_limit_microdollars is None and self.weekly_limit_microdollars is None:
            raise ValidationError("Set a daily or a weekly limit (or delete the override).")
        if self.daily_limit_microdollars is not None and self.weekly_limit_microdollars is not None:
            _validate_daily_within_weekly(self.daily_limit_microdollars, self.weekly_limit_microdollars)


class PersonalSpendCap(models.Model):
    """A daily cap the user set on themselves, below their plan's daily limit.

    Kept apart from UserLimitOverride: that one is a staff decision with a reason,
    this one is the user's own setting and can only lower what they may spend.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_spend_cap")
    daily_cap_microdollars = models.BigIntegerField(validators=[MinValueValidator(1)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(daily_cap_microdollars__gt=0), name="ratelimits_personal_cap_positive"
            )
        ]

    def __str__(self) -> str:
        return f"personal cap {format_microdollars(self.daily_cap_microdollars)}/day for {self.user_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        cache_delete_on_commit(user_limits_key(self.user_id))

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        user_id = self.user_id
        result = super().delete(*args, **kwargs)
        cache_delete_on_commit(user_limits_key(user_id))
        return result


class DailySpend(models.Model):
    """Durable per-user, per-UTC-day spend: the admin's 30-day chart.

    The Redis counters enforce the limits and expire with their window; this row
    is history only and never read by a check.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_spend")
    date = models.DateField()
    microdollars = models.BigIntegerField(default=0)
    turn_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "date"], name="ratelimits_dailyspend_user_date"),
            models.CheckConstraint(condition=models.Q(microdollars__gte=0), name="ratelimits_dailyspend_not_negative"),
        ]
        ordering = ["-date"]

    def __str__(self) -> str:
        return f"{self.user_id} {self.date}: {format_microdollars(self.microdollars)}"


class RateLimitAuditEntry(models.Model):
    """Who changed which limit or counter, when, and why. Append-only."""

    class Action(models.TextChoices):
        RESET_DAILY = "RESET_DAILY", "Reset daily window"
        RESET_WEEKLY = "RESET_WEEKLY", "Reset daily and weekly windows"
        PAID_RESET = "PAID_RESET", "Paid daily reset (by the user)"
        SET_TIER = "SET_TIER", "Set tier"
        SET_OVERRIDE = "SET_OVERRIDE", "Set limit override"
        CLEAR_OVERRIDE = "CLEAR_OVERRIDE", "Remove limit override"
        SET_TIER_LIMIT = "SET_TIER_LIMIT", "Edit tier limits"
        SET_PERSONAL_CAP = "SET_PERSONAL_CAP", "Set personal daily cap (by the user)"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="rate_limit_audit_entries",
        help_text="The user whose limits or counters changed; empty for tier-wide edits.",
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    details = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="ratelimit_audit_user_created")]
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "rate limit audit entries"

    def __str__(self) -> str:
        return f"{self.action} for {self.user_id} by {self.actor_id}"


def _validate_daily_within_weekly(daily: int | None, weekly: int | None) -> None:
    # A weekly window smaller than one day's would make the daily limit unreachable.
    if daily and weekly and weekly < daily:
        raise ValidationError({"weekly_limit_microdollars": "The weekly limit must be at least the daily limit."})
