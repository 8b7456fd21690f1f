"""Rate-limit reads: limit resolution, the pre-turn check, usage and its estimate.

Reads fail open: a Redis outage lets turns through and reports 0 %.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.utils import timezone

from billing.models import Tier
from billing.selectors import account_get_for_user, credits_enabled
from copilot_site.core.caching import cache_get_many, cache_set

from . import redis_store
from .caching import (
    TIER_LIMITS_KEY,
    TIER_LIMITS_TTL_S,
    TIER_TTL_S,
    USER_LIMITS_TTL_S,
    tier_key,
    user_limits_key,
)
from .errors import RateLimitExceeded, UserNotFound, iso_utc
from .health import fail_open_record
from .models import DailySpend, PersonalSpendCap, RateLimitAuditEntry, TierLimit, UserLimitOverride
from .redis_store import SpendSnapshot, Window

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

# Each tier's limits as a multiple of FREE's; used only for a tier whose TierLimit row is missing.
# billing/views.py shows the same multiples on the plans page.
TIER_MULTIPLIERS: dict[str, int] = {Tier.FREE: 1, Tier.PRO: 5, Tier.BUSINESS: 20, Tier.ENTERPRISE: 60}
# Below this much observed history the pace estimate would be mostly noise.
MIN_PACE_WINDOW_S = 15 * 60


# --- limit resolution ---------------------------------------------------------------


@dataclass(frozen=True)
class TierInfo:
    tier: str
    past_due: bool


@dataclass(frozen=True)
class Limits:
    """Everything a check needs about one user's limits, in microdollars (0 = unlimited)."""

    tier: str
    """The account's tier (what the user pays for)."""
    past_due: bool
    """Payment failed: the tier's limits fall back to FREE's (an override still applies)."""
    account_daily: int
    account_weekly: int
    """The plan's (or the override's) limits: what paid resets and percentages are about."""
    override_daily: int | None
    override_weekly: int | None
    personal_daily_cap: int | None

    @property
    def limits_tier(self) -> str:
        return Tier.FREE if self.past_due else self.tier

    @property
    def personal_cap_binds(self) -> bool:
        cap = self.personal_daily_cap
        return cap is not None and (self.account_daily <= 0 or cap < self.account_daily)

    @property
    def daily(self) -> int:
        """The enforced daily limit: the plan's, lowered by the user's own cap."""
        if self.personal_cap_binds:
            assert self.personal_daily_cap is not None
            return self.personal_daily_cap
        return self.account_daily

    @property
    def weekly(self) -> int:
        return self.account_weekly


def _non_negative(value: Any, what: str) -> int | None:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        logger.warning("Invalid value for %s: %r", what, value)
        return None


def _default_tier_limits(tier: str) -> tuple[int, int]:
    multiplier = TIER_MULTIPLIERS.get(tier, 1)
    daily = _non_negative(settings.COPILOT_DAILY_COST_LIMIT_MICRODOLLARS, "daily cost limit") or 0
    weekly = _non_negative(settings.COPILOT_WEEKLY_COST_LIMIT_MICRODOLLARS, "weekly cost limit") or 0
    return daily * multiplier, weekly * multiplier


def _load_tier_info(user: User) -> TierInfo | None:
    """The account's tier and past-due flag; None (→ FREE, not cached) when unusable."""
    try:
        account = account_get_for_user(user=user)
    except DatabaseError:
        logger.warning("Tier lookup failed for user %s; using FREE limits", user.pk, exc_info=True)
        return None
    if account is None:  # no billing account yet: FREE, and billing creates it as FREE
        return TierInfo(tier=Tier.FREE, past_due=False)
    if account.tier not in Tier.values:
        logger.warning("Invalid tier %r for user %s; using FREE limits", account.tier, user.pk)
        return None
    return TierInfo(tier=account.tier, past_due=account.is_past_due)


def _tier_info(user: User, cached: dict[str, Any]) -> TierInfo:
    entry = cached.get(tier_key(user.pk))
    if isinstance(entry, dict) and entry.get("tier") in Tier.values:
        return TierInfo(tier=entry["tier"], past_due=bool(entry.get("past_due")))
    info = _load_tier_info(user)
    if info is None:
        # A DB error or an invalid tier reads as FREE, not cached, so the next call
        # retries the lookup.
        return TierInfo(tier=Tier.FREE, past_due=False)
    cache_set(tier_key(user.pk), {"tier": info.tier, "past_due": info.past_due}, TIER_TTL_S)
    return info


def _tier_table(cached: dict[str, Any]) -> dict[str, tuple[int, int]]:
    entry = cached.get(TIER_LIMITS_KEY)
    if isinstance(entry, dict):
        return {tier: (int(pair[0]), int(pair[1])) for tier, pair in entry.items()}
    try:
        table = {
            row.tier: (row.daily_limit_microdollars, row.weekly_limit_microdollars) for row in TierLimit.objects.all()
        }
    except DatabaseError:
        logger.warning("Tier limit lookup failed; using the settings' limits", exc_info=True)
        return {}
    cache_set(TIER_LIMITS_KEY, {tier: list(pair) for tier, pair in table.items()}, TIER_LIMITS_TTL_S)
    return table


def _user_limits(user: User, cached: dict[str, Any]) -> dict[str, int | None]:
    key = user_limits_key(user.pk)
    entry = cached.get(key)
    if isinstance(entry, dict):
        return entry
    try:
        override = (
            UserLimitOverride.objects.filter(user_id=user.pk)
            .values("daily_limit_microdollars", "weekly_limit_microdollars")
            .first()
        )
        cap = PersonalSpendCap.objects.filter(user_id=user.pk).values_list("daily_cap_microdollars", flat=True).first()
    except DatabaseError:
        logger.warning("Override lookup failed for user %s; using the tier's limits", user.pk, exc_info=True)
        return {"override_daily": None, "override_weekly": None, "personal_daily": None}
    value: dict[str, int | None] = {
        "override_daily": override["daily_limit_microdollars"] if override else None,
        "override_weekly": override["weekly_limit_microdollars"] if override else None,
        "personal_daily": cap,
    }
    cache_set(key, value, USER_LIMITS_TTL_S)
    return value


def limits_resolve(*, user: User) -> Limits:
    """The user's limits: tier row (FREE's when past due), replaced per window by an
    override, and the daily one lowered by a personal cap. One cache round trip when warm."""
    cached = cache_get_many([tier_key(user.pk), TIER_LIMITS_KEY, user_limits_key(user.pk)])
    info = _tier_info(user, cached)
    limits_tier = Tier.FREE if info.past_due else info.tier
    daily, weekly = _tier_table(cached).get(limits_tier) or _default_tier_limits(limits_tier)
    own = _user_limits(user, cached)
    override_daily, override_weekly = own.get("override_daily"), own.get("override_weekly")
    return Limits(
        tier=info.tier,
        past_due=info.past_due,
        account_daily=override_daily if override_daily is not None else daily,
        account_weekly=override_weekly if override_weekly is not None else weekly,
        override_daily=override_daily,
        override_weekly=override_weekly,
        personal_daily_cap=own.get("personal_daily"),
    )


def limits_get(*, user: User) -> tuple[int, int, str]:
    """(daily, weekly, tier) as enforced; 0 means unlimited for that window."""
    limits = limits_resolve(user=user)
    return limits.daily, limits.weekly, limits.tier


def user_tier_get(*, user: User) -> str:
    """The account's tier, cached 300 s; FREE (uncached) when the lookup fails."""
    return _tier_info(user, cache_get_many([tier_key(user.pk)])).tier


def turn_cost_cap_get(*, user: User) -> int:
    """The engine's per-turn cost cap for this user (0 = none), by the tier whose limits apply."""
    tier = limits_resolve(user=user).limits_tier
    caps: dict[str, Any] = settings.COPILOT_TURN_COST_CAP_MICRODOLLARS
    return _non_negative(caps.get(tier, 0), f"turn cost cap of {tier}") or 0


# --- the pre-turn check ---------------------------------------------------------------


def spend_recorded(*, user_id: int, now: datetime) -> tuple[int, int]:
    """(today, this ISO week) spend recorded in the database (`DailySpend`, UTC days)."""
    today = now.astimezone(UTC).date()
    monday = today - timedelta(days=today.weekday())
    daily = weekly = 0
    for day, microdollars in DailySpend.objects.filter(user_id=user_id, date__gte=monday, date__lte=today).values_list(
        "date", "microdollars"
    ):
        weekly += microdollars
        if day == today:
            daily += microdollars
    return daily, weekly


def _spend_read_or_rebuild(user_id: int, now: datetime) -> tuple[int, int]:
    """The user's (daily, weekly) spend from Redis; when Redis lost the user's windows, rebuilt
    from the database first. A database error leaves Redis's figures (the check fails open)."""
    daily, weekly, known = redis_store.read_spend_known(user_id, now)
    if known:
        return daily, weekly
    try:
        recorded_daily, recorded_weekly = spend_recorded(user_id=user_id, now=now)
    except DatabaseError:
        logger.warning("Could not read the recorded spend of user %s; not rebuilding", user_id, exc_info=True)
        return daily, weekly
    rebuilt = redis_store.spend_windows_rebuild(user_id, now, daily=recorded_daily, weekly=recorded_weekly)
    if rebuilt and (recorded_daily or recorded_weekly):  # a user with no spend this week is not news
        logger.info("Rebuilt the spend windows of user %s from the database", user_id)
    return redis_store.read_spend(user_id, now)


def rate_limit_check(*, user: User, daily: int, weekly: int, now: datetime | None = None) -> None:
    """Raise RateLimitExceeded when spend has reached a limit; daily first, equality blocks.

    A soft check: two turns started together may both pass. Fails open on Redis errors.
    """
    if daily <= 0 and weekly <= 0:
        return
    now = now or timezone.now()
    try:
        used_daily, used_weekly = _spend_read_or_rebuild(user.pk, now)
    except redis.RedisError:
        logger.warning("Redis unavailable for rate limit check, allowing request")
        fail_open_record()
        return
    if daily > 0 and used_daily >= daily:
        raise RateLimitExceeded("daily", redis_store.daily_reset_at(now), now=now)
    if weekly > 0 and used_weekly >= weekly:
        raise RateLimitExceeded("weekly", redis_store.weekly_reset_at(now), now=now)


# --- usage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowUsage:
    window: Window
    used: int
    limit: int
    resets_at: datetime
    projected_exhaustion_at: datetime | None

    @property
    def percent_used(self) -> float | None:
        return percent_used(self.used, self.limit)


@dataclass(frozen=True)
class UsageStatus:
    """Internal: raw figures included. Never serialise this to a user."""

    daily: WindowUsage
    weekly: WindowUsage
    limits: Limits
    reset_cost_cents: int
    redis_available: bool


def percent_used(used: int, limit: int) -> float | None:
    """None for an unlimited window; exactly 100.0 at or over the limit, else 0.1 steps.

    Below the limit the value stays ≤ 99.9, so the UI's "exhausted" test (≥ 100) and the
    server's check always agree.
    """
    if limit <= 0:
        return None
    if used >= limit:
        return 100.0
    return min(round(100 * used / limit, 1), 99.9)


def projected_exhaustion(
    *, used: int, limit: int, snapshot: SpendSnapshot, now: datetime, resets_at: datetime
) -> datetime | None:
    """When the window's limit will be reached at the pace of the last few hours, if before
    it resets; ``now`` when already reached; None when unlimited, idle or not before reset."""
    if limit <= 0:
        return None
    if used >= limit:
        return now
    if snapshot.recent_microdollars <= 0 or snapshot.recent_since is None:
        return None
    observed_s = max((now - snapshot.recent_since).total_seconds(), MIN_PACE_WINDOW_S)
    rate = snapshot.recent_microdollars / observed_s
    eta = now + timedelta(seconds=(limit - used) / rate)
    if eta >= resets_at:
        return None
    return eta.replace(microsecond=0)


def reset_cost_cents() -> int:
    """The paid reset's price as offered to users (0 = not offered)."""
    if not credits_enabled():
        return 0
    return _non_negative(settings.COPILOT_RATE_LIMIT_RESET_COST_CENTS, "reset cost") or 0


def usage_status(*, user: User, now: datetime | None = None, limits: Limits | None = None) -> UsageStatus:
    """Spend against the account limits, both windows and the pace in one round trip.

    A missing counter counts as 0; a Redis error reads as zero spend (fail open). Windows
    that Redis lost (a restart that kept nothing) are rebuilt from the database first, as
    the pre-turn check does, so the usage page never shows a spend of 0 that is not."""
    now = now or timezone.now()
    limits = limits or limits_resolve(user=user)
    try:
        snapshot = redis_store.read_spend_snapshot(user.pk, now)
        if not snapshot.known:
            _spend_read_or_rebuild(user.pk, now)
            snapshot = redis_store.read_spend_snapshot(user.pk, now)
        available = True
    except redis.RedisError:
        logger.warning("Redis unavailable for usage status, reporting zero usage")
        snapshot = SpendSnapshot(daily=0, weekly=0, recent_microdollars=0, recent_since=None)
        available = False

    def window(name: Window, used: int, limit: int) -> WindowUsage:
        resets = redis_store.reset_at(name, now)
        projected = projected_exhaustion(used=used, limit=limit, snapshot=snapshot, now=now, resets_at=resets)
        return WindowUsage(name, used, limit, resets, projected)

    return UsageStatus(
        daily=window("daily", snapshot.daily, limits.account_daily),
        weekly=window("weekly", snapshot.weekly, limits.account_weekly),
        limits=limits,
        reset_cost_cents=reset_cost_cents(),
        redis_available=available,
    )


class PublicWindow(TypedDict):
    percent_used: float
    resets_at: datetime
    projected_exhaustion_at: datetime | None


class PublicPersonalCap(TypedDict):
    daily_cap_microdollars: int
    reached: bool


class PublicUsage(TypedDict):
    daily: PublicWindow | None
    weekly: PublicWindow | None
    tier: str
    reset_cost: int
    past_due: bool
    personal_cap: PublicPersonalCap | None


class UsageWarning(TypedDict):
    """JSON-ready: the transport sends it as ``{"type": "data-usage-warning", "data": ...}``."""

    window: Window
    percent_used: float
    resets_at: str
    projected_exhaustion_at: str | None


def _public_window(usage: WindowUsage) -> PublicWindow | None:
    percent = usage.percent_used
    if percent is None:
        return None
    return {
        "percent_used": percent,
        "resets_at": usage.resets_at,
        "projected_exhaustion_at": usage.projected_exhaustion_at,
    }


def usage_public(*, user: User, now: datetime | None = None) -> PublicUsage:
    """What a user may see: percentages and times only, never spend or limits.

    Percentages are against the plan's limits. The personal cap is the user's own
    figure; against it only "reached" is reported, so per-turn cost stays hidden.
    """
    status = usage_status(user=user, now=now)
    limits = status.limits
    cap = limits.personal_daily_cap
    return {
        "daily": _public_window(status.daily),
        "weekly": _public_window(status.weekly),
        "tier": limits.tier,
        "reset_cost": status.reset_cost_cents,
        "past_due": limits.past_due,
        "personal_cap": (
            {"daily_cap_microdollars": cap, "reached": status.daily.used >= cap} if cap is not None else None
        ),
    }


def _warning_threshold_percent() -> int:
    return _non_negative(settings.COPILOT_USAGE_WARNING_PERCENT, "usage warning percent") or 80


def usage_warnings(status: UsageStatus) -> list[UsageWarning]:
    """Every window at or past the warning threshold, daily first."""
    threshold = _warning_threshold_percent()
    warnings: list[UsageWarning] = []
    for usage in (status.daily, status.weekly):
        percent = usage.percent_used
        if percent is None or usage.used * 100 < usage.limit * threshold:
            continue
        projected = usage.projected_exhaustion_at
        warnings.append(
            {
                "window": usage.window,
                "percent_used": percent,
                "resets_at": iso_utc(usage.resets_at),
                "projected_exhaustion_at": iso_utc(projected) if projected else None,
            }
        )
    return warnings


def usage_warning_get(*, user: User, now: datetime | None = None) -> UsageWarning | None:
    """The first window at or over the warning percentage (daily before weekly) with its exhaustion estimate, or None.
    Stateless: see ``services.usage_warning_consume`` for the once-per-window variant."""
    warnings = usage_warnings(usage_status(user=user, now=now))
    return warnings[0] if warnings else None


# --- staff -------------------------------------------------------------------------------


def user_get_by_reference(*, reference: str) -> User:
    """A user by primary key (ASCII digits) or email (case-insensitive); UserNotFound otherwise.

    `str.isdigit` alone also accepts digits `int` refuses (`²`), hence the ASCII check.
    """
    users = get_user_model().objects.all()
    user = users.filter(pk=int(reference)).first() if reference.isascii() and reference.isdigit() else None
    if user is None:
        user = users.filter(email__iexact=reference).first() if reference else None
    if user is None:
        raise UserNotFound()
    return user


class StaffRateLimitView(TypedDict):
    user_id: int
    user_email: str
    tier: str
    past_due: bool
    daily_cost_limit_microdollars: int
    weekly_cost_limit_microdollars: int
    daily_cost_used_microdollars: int
    weekly_cost_used_microdollars: int
    override: dict[str, Any] | None
    personal_daily_cap_microdollars: int | None
    redis_available: bool


def rate_limit_staff_view(*, user: User, now: datetime | None = None) -> StaffRateLimitView:
    """Raw microdollar figures for staff (for debugging), plus the override and personal cap."""
    status = usage_status(user=user, now=now)
    limits = status.limits
    override = (
        UserLimitOverride.objects.filter(user=user)
        .values("daily_limit_microdollars", "weekly_limit_microdollars", "reason", "updated_at")
        .first()
    )
    return {
        "user_id": user.pk,
        "user_email": user.email,
        "tier": limits.tier,
        "past_due": limits.past_due,
        "daily_cost_limit_microdollars": limits.account_daily,
        "weekly_cost_limit_microdollars": limits.account_weekly,
        "daily_cost_used_microdollars": status.daily.used,
        "weekly_cost_used_microdollars": status.weekly.used,
        "override": dict(override) if override else None,
        "personal_daily_cap_microdollars": limits.personal_daily_cap,
        "redis_available": status.redis_available,
    }


@dataclass(frozen=True)
class DaySpend:
    date: date
    microdollars: int
    turn_count: int


def daily_spend_series(*, user: User, days: int = 30, today: date | None = None) -> list[DaySpend]:
    """The last ``days`` UTC days, oldest first, with zero-spend days filled in."""
    today = today or timezone.now().astimezone(UTC).date()
    start = today - timedelta(days=days - 1)
    rows = {
        row.date: row for row in DailySpend.objects.filter(user=user, date__gte=start, date__lte=today).order_by("date")
    }
    series = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        row = rows.get(day)
        series.append(DaySpend(day, row.microdollars if row else 0, row.turn_count if row else 0))
    return series


def audit_entry_list_for_user(*, user: User, limit: int = 20) -> list[RateLimitAuditEntry]:
    return list(RateLimitAuditEntry.objects.filter(user=user).select_related("actor")[:limit])
