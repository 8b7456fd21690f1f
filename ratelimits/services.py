"""Rate-limit writes: spend recording, the paid daily reset, the usage warning, and the
staff and user levers. Everything that charges or refunds money fails closed: a Redis
or database error refuses the operation rather than risk a charge without its effect.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypedDict

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from billing.errors import InsufficientCredits
from billing.models import Tier
from billing.selectors import credits_enabled, tier_get_for_user
from billing.services import account_tier_set, credits_refund, credits_spend
from copilot_site.core import metrics, sql

from . import redis_store
from .errors import (
    PersonalCapInvalid,
    RateLimitExceeded,
    ResetFailed,
    ResetInsufficientCredits,
    ResetTooMany,
    ResetUnavailable,
    UsageResetFailed,
)
from .models import DailySpend, PersonalSpendCap, RateLimitAuditEntry, TierLimit, UserLimitOverride
from .selectors import (
    PublicUsage,
    UsageWarning,
    limits_resolve,
    rate_limit_check,
    usage_public,
    usage_status,
    usage_warnings,
)

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

RESET_REASON = "Copilot daily rate limit reset"
REFUND_REASON = "Refund for failed copilot rate-limit reset"


# --- spend ------------------------------------------------------------------------------


def usage_record(*, user: User, microdollars: int, now: datetime | None = None) -> None:
    """Add a turn's real cost to the user's daily and weekly counters (one MULTI, each with its TTL).

    A cost ≤ 0 touches nothing. Redis errors are logged and swallowed (the turn
    already happened); any other error propagates to the engine. The durable
    per-day total (the admin chart) is updated too.
    """
    amount = max(0, int(microdollars))
    if amount == 0:
        return
    now = now or timezone.now()
    logger.info("Recording copilot spend: %d microdollars", amount)
    try:
        redis_store.record_spend(user.pk, amount, now)
    except redis.RedisError:
        logger.warning("Redis unavailable for recording cost usage (microdollars=%d)", amount)
    _daily_spend_add(user_id=user.pk, day=now.astimezone(UTC).date(), microdollars=amount)


def _daily_spend_add(*, user_id: int, day: date, microdollars: int) -> None:
    """Race-free upsert in one statement, hand-written because it runs at the end of
    every paid turn (`copilot_site.core.sql`)."""
    row = DailySpend(user_id=user_id, date=day, microdollars=microdollars, turn_count=1)
    sql.insert_or_add(row, unique=["user", "date"], add=["microdollars", "turn_count"])


# --- the pre-turn check ------------------------------------------------------------------


def turn_allowed_check(*, user: User, now: datetime | None = None) -> None:
    """The transport's hook before starting a turn: returns, or raises RateLimitExceeded
    (HTTP 429 ``{detail, window, resets_at}``; WebSocket ``rate_limited``)."""
    limits = limits_resolve(user=user)
    try:
        rate_limit_check(user=user, daily=limits.daily, weekly=limits.weekly, now=now)
    except RateLimitExceeded as exc:
        metrics.rate_limit_refused(window=exc.window)
        if exc.window == "daily" and limits.personal_cap_binds:
            raise RateLimitExceeded("daily", exc.resets_at, now=now, personal_cap=True) from None
        raise


# --- the usage warning (at COPILOT_USAGE_WARNING_PERCENT of a window) ------------------


def usage_warning_consume(*, user: User, now: datetime | None = None) -> UsageWarning | None:
    """For the transport at the end of a turn: the `data-usage-warning` payload the first
    time a window crosses the warning percentage, None otherwise (and on any Redis error).

    A Redis flag per window makes it once per window; a reset clears the daily flag,
    so crossing it again after a reset warns again.
    """
    now = now or timezone.now()
    status = usage_status(user=user, now=now)
    if not status.redis_available:
        return None
    try:
        for warning in usage_warnings(status):
            if redis_store.warning_flag_set(user.pk, warning["window"], now):
                return warning
    except redis.RedisError:
        logger.warning("Redis unavailable for the usage warning flag; no warning sent")
    return None


# --- paid daily reset -------------------------------------------------------------------


class ResetResult(TypedDict):
    success: bool
    credits_charged: int
    remaining_balance: int
    usage: PublicUsage


def usage_reset_paid(*, user: User, now: datetime | None = None) -> ResetResult:
    """Charge credits and reset today's window.

    Checks run in this order, the first refusal wins: no reset price or credits off
    (400) → no daily limit (400) → today's reset count (503 when unreadable, 429 at the
    cap) → the per-user lock (429) → the daily limit not reached, or the weekly one
    also reached (400) → the charge (402). Every refusal raises a RateLimitError with
    its status. Not atomic as a whole on purpose: the
    charge commits before the Redis step so a failed step can be refunded."""
    now = now or timezone.now()
    cost = _raw_reset_cost()
    if cost <= 0:
        raise ResetUnavailable("Rate limit reset is not available.")
    if not credits_enabled():
        raise ResetUnavailable("Rate limit reset is not available (credit system is disabled).")
    limits = limits_resolve(user=user)
    daily_limit, weekly_limit = limits.account_daily, limits.account_weekly
    if daily_limit <= 0:
        raise ResetUnavailable("No daily limit is configured — nothing to reset.")
    _check_reset_count(user, now)

    try:
        token = redis_store.reset_lock_acquire(user.pk)
    except redis.RedisError:
        token = None
    if token is None:
        raise ResetTooMany("A reset is already in progress. Please try again.")
    try:
        # Re-read the count under the lock: a reset that finished while this request
        # waited must count against the cap.
        _check_reset_count(user, now)
        try:
            used_daily, used_weekly = redis_store.read_spend(user.pk, now)
        except redis.RedisError as exc:
            raise ResetFailed("Unable to verify reset eligibility — please try again later.") from exc
        if used_daily < daily_limit:
            cap = limits.personal_daily_cap
            if limits.personal_cap_binds and cap is not None and used_daily >= cap:
                raise ResetUnavailable(
                    "You have reached the personal daily cap you set. Raise or remove it on your account page instead."
                )
            raise ResetUnavailable("You have not reached your daily limit yet.")
        if weekly_limit > 0 and used_weekly >= weekly_limit:
            raise ResetUnavailable("Your weekly limit is also reached. Resetting the daily limit won't help.")

        attempt = f"ratelimit-reset:{user.pk}:{redis_store.daily_window_id(now)}:{uuid.uuid4().hex}"
        metadata = {"reason": "copilot_rate_limit_reset", "daily_limit_microdollars": daily_limit}
        try:
            remaining = credits_spend(
                user=user, amount_cents=cost, idempotency_key=attempt, reason=RESET_REASON, metadata=metadata
            )
        except InsufficientCredits as exc:
            raise ResetInsufficientCredits() from exc

        try:
            redis_store.reset_daily_window(user.pk, daily_limit, now)
        except redis.RedisError as exc:
            _refund_failed_reset(user=user, cost=cost, attempt=attempt)
            raise ResetFailed(
                "Rate limit reset failed — please try again later. Your credits have not been charged."
            ) from exc

        try:
            redis_store.reset_count_incr(user.pk, now)
        except redis.RedisError:
            logger.warning("Could not increment the reset count for user %s", user.pk)
        try:
            _audit(
                actor=user,
                user=user,
                action=RateLimitAuditEntry.Action.PAID_RESET,
                details={"credits_charged": cost, "idempotency_key": attempt},
            )
        except DatabaseError:
            # The charge and the reset both happened; a lost audit row must not turn that into an error.
            logger.exception("Could not write the audit entry of a paid reset for user %s", user.pk)
    finally:
        try:
            redis_store.reset_lock_release(user.pk, token)
        except redis.RedisError:
            logger.warning("Could not release the reset lock of user %s; it expires in 10 s", user.pk)

    return {
        "success": True,
        "credits_charged": cost,
        "remaining_balance": remaining,
        "usage": usage_public(user=user, now=now),
    }


def _raw_reset_cost() -> int:
    try:
        return max(0, int(settings.COPILOT_RATE_LIMIT_RESET_COST_CENTS))
    except (TypeError, ValueError):
        logger.warning("Invalid COPILOT_RATE_LIMIT_RESET_COST_CENTS: %r", settings.COPILOT_RATE_LIMIT_RESET_COST_CENTS)
        return 0


def _check_reset_count(user: User, now: datetime) -> None:
    try:
        count = redis_store.reset_count_get(user.pk, now)
    except redis.RedisError as exc:
        # Fail closed: an unreadable count could let a user past the daily cap.
        raise ResetFailed("Unable to verify reset eligibility — please try again later.") from exc
    max_resets = int(settings.COPILOT_MAX_DAILY_RESETS)
    if max_resets > 0 and count >= max_resets:
        raise ResetTooMany(f"You've used all {max_resets} resets for today.")


def _refund_failed_reset(*, user: User, cost: int, attempt: str) -> None:
    try:
        credits_refund(
            user=user,
            amount_cents=cost,
            idempotency_key=f"{attempt}:refund",
            reason=REFUND_REASON,
            metadata={"reason": "copilot_rate_limit_reset_refund", "charge_idempotency_key": attempt},
        )
    except Exception as exc:
        logger.critical(
            "Rate-limit reset failed and its refund failed too: user_id=%s, cost=%d cents, charge=%s",
            user.pk,
            cost,
            attempt,
            exc_info=True,
        )
        raise ResetFailed(
            "Rate limit reset failed and the automatic refund also failed. Please contact support for assistance."
        ) from exc


# --- user levers ----------------------------------------------------------------------


@transaction.atomic
def personal_cap_set(*, user: User, daily_cap_microdollars: int | None) -> PersonalSpendCap | None:
    """Set (or with None, remove) the user's own daily cap; it must be below the plan's
    daily limit when the plan has one."""
    existing = PersonalSpendCap.objects.filter(user=user).first()
    previous = existing.daily_cap_microdollars if existing else None
    if daily_cap_microdollars is None:
        if existing is not None:
            existing.delete()
        _audit(
            actor=user,
            user=user,
            action=RateLimitAuditEntry.Action.SET_PERSONAL_CAP,
            details={"previous": previous, "daily_cap_microdollars": None},
        )
        return None
    if daily_cap_microdollars <= 0:
        raise PersonalCapInvalid("Your personal daily cap must be a positive amount.")
    account_daily = limits_resolve(user=user).account_daily
    if account_daily > 0 and daily_cap_microdollars >= account_daily:
        raise PersonalCapInvalid("Your personal daily cap must be below your plan's daily limit.")
    cap = existing or PersonalSpendCap(user=user)
    cap.daily_cap_microdollars = daily_cap_microdollars
    cap.full_clean()
    cap.save()
    _audit(
        actor=user,
        user=user,
        action=RateLimitAuditEntry.Action.SET_PERSONAL_CAP,
        details={"previous": previous, "daily_cap_microdollars": daily_cap_microdollars},
    )
    return cap


# --- staff levers ---------------------------------------------------------------------


def _audit(
    *, actor: User | None, user: User | None, action: str, details: dict[str, Any], reason: str = ""
) -> RateLimitAuditEntry:
    return RateLimitAuditEntry.objects.create(actor=actor, user=user, action=action, details=details, reason=reason)


def usage_reset_by_staff(
    *, user: User, actor: User, include_weekly: bool, reason: str = "", now: datetime | None = None
) -> None:
    """Delete the daily counter (and the weekly one) in one DEL.

    Fails closed: a Redis error raises UsageResetFailed (HTTP 500) and writes no audit row.
    """
    now = now or timezone.now()
    try:
        redis_store.delete_windows(user.pk, now, include_weekly=include_weekly)
    except redis.RedisError as exc:
        logger.exception("Staff usage reset failed for user %s", user.pk)
        raise UsageResetFailed() from exc
    action = RateLimitAuditEntry.Action.RESET_WEEKLY if include_weekly else RateLimitAuditEntry.Action.RESET_DAILY
    _audit(
        actor=actor,
        user=user,
        action=action,
        reason=reason,
        details={"daily_window": redis_store.daily_window_id(now), "weekly_window": redis_store.weekly_window_id(now)},
    )


@transaction.atomic
def user_tier_set(*, user: User, tier: str, actor: User, reason: str = "") -> str:
    """Change the user's subscription tier (staff); returns the previous tier.

    Goes through billing's ``account_tier_set`` (TierChange row, Stripe drift check), which
    deletes the ``ratelimits:tier:{id}`` cache entry on commit: the new limits apply at once.
    """
    if tier not in Tier.values:
        raise ValueError(f"Unknown tier {tier!r}")
    previous = tier_get_for_user(user=user)
    account_tier_set(user=user, tier=tier, reason=reason or "Set by staff (rate limits)", actor=actor)
    _audit(
        actor=actor,
        user=user,
        action=RateLimitAuditEntry.Action.SET_TIER,
        reason=reason,
        details={"previous": previous, "tier": tier},
    )
    return previous


@transaction.atomic
def limit_override_set(
    *, user: User, daily_microdollars: int | None, weekly_microdollars: int | None, reason: str, actor: User
) -> UserLimitOverride | None:
    """Set the user's override; None for a window keeps the tier's value, and None for
    both removes the override."""
    existing = UserLimitOverride.objects.filter(user=user).first()
    previous = (
        {"daily": existing.daily_limit_microdollars, "weekly": existing.weekly_limit_microdollars} if existing else None
    )
    details: dict[str, Any] = {
        "previous": previous,
        "daily_limit_microdollars": daily_microdollars,
        "weekly_limit_microdollars": weekly_microdollars,
    }
    if daily_microdollars is None and weekly_microdollars is None:
        if existing is not None:
            existing.delete()
        _audit(actor=actor, user=user, action=RateLimitAuditEntry.Action.CLEAR_OVERRIDE, reason=reason, details=details)
        return None
    override = existing or UserLimitOverride(user=user)
    override.daily_limit_microdollars = daily_microdollars
    override.weekly_limit_microdollars = weekly_microdollars
    override.reason = reason
    override.set_by = actor
    override.full_clean()
    override.save()
    _audit(actor=actor, user=user, action=RateLimitAuditEntry.Action.SET_OVERRIDE, reason=reason, details=details)
    return override


@transaction.atomic
def limit_override_delete(*, override: UserLimitOverride, actor: User, reason: str = "") -> None:
    details = {"previous": {"daily": override.daily_limit_microdollars, "weekly": override.weekly_limit_microdollars}}
    user_id = override.user_id
    override.delete()
    RateLimitAuditEntry.objects.create(
        actor=actor,
        user_id=user_id,
        action=RateLimitAuditEntry.Action.CLEAR_OVERRIDE,
        reason=reason,
        details=details,
    )


@transaction.atomic
def tier_limit_save(*, tier_limit: TierLimit, actor: User, reason: str = "") -> TierLimit:
    """Save a (validated) TierLimit edit; every check sees it once the transaction commits."""
    previous = (
        TierLimit.objects.filter(pk=tier_limit.pk)
        .values("daily_limit_microdollars", "weekly_limit_microdollars")
        .first()
        if tier_limit.pk
        else None
    )
    tier_limit.full_clean()
    tier_limit.save()
    _audit(
        actor=actor,
        user=None,
        action=RateLimitAuditEntry.Action.SET_TIER_LIMIT,
        reason=reason,
        details={
            "tier": tier_limit.tier,
            "previous": previous,
            "daily_limit_microdollars": tier_limit.daily_limit_microdollars,
            "weekly_limit_microdollars": tier_limit.weekly_limit_microdollars,
        },
    )
    return tier_limit
