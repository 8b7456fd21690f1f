"""Billing reads: balances, tiers, the effective billing configuration, tier prices.

Other apps read billing through this module (and write through ``billing.services``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from copilot_site.core.caching import cache_get, cache_set, is_missing

from . import caching, stripe_gateway
from .errors import PaymentProviderError
from .models import BillingConfig, CreditTransaction, CustomerAccount, Tier

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

PAID_TIERS = (Tier.PRO, Tier.BUSINESS)


# --- credits ------------------------------------------------------------------------------


def credits_enabled() -> bool:
    """``ENABLE_CREDIT``: when False nothing is charged and credit features report themselves unavailable."""
    return bool(settings.ENABLE_CREDIT)


def credit_balance(*, user: User) -> int:
    """The user's balance in cents (0 without an account row). One indexed query, no lock."""
    balance = CustomerAccount.objects.filter(user=user).values_list("credit_balance_cents", flat=True).first()
    return balance or 0


def credits_can_afford(*, user: User, amount_cents: int) -> bool:
    """Whether a charge of ``amount_cents`` would pass now (always True with credits switched off).

    Advisory only: the charge itself (``credits_spend``) re-checks under the row lock.
    """
    if not credits_enabled() or amount_cents <= 0:
        return True
    return credit_balance(user=user) >= amount_cents


def credit_transactions(*, user: User) -> QuerySet[CreditTransaction]:
    return CreditTransaction.objects.filter(user=user).order_by("-created_at", "-pk")


# --- accounts and tiers -----------------------------------------------------------------------


def account_get_for_user(*, user: User) -> CustomerAccount | None:
    return CustomerAccount.objects.filter(user=user).first()


def tier_get_for_user(*, user: User) -> str:
    """The user's tier (FREE when they have no account row yet)."""
    tier = CustomerAccount.objects.filter(user=user).values_list("tier", flat=True).first()
    return tier or Tier.FREE


def is_past_due(*, user: User) -> bool:
    """True after ``invoice.payment_failed`` until ``invoice.paid`` (what that means is the caller's policy)."""
    return CustomerAccount.objects.filter(user=user, payment_failed_at__isnull=False).exists()


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BillingSettings:
    """Settings merged with the operator's ``BillingConfig`` row (a null field keeps the setting)."""

    payment_enabled: bool
    price_ids: dict[str, str]  # PRO/BUSINESS → Stripe price id ("" when not configured)

    def price_for_tier(self, tier: str) -> str:
        return self.price_ids.get(tier, "")

    def tier_for_price(self, price_id: str | None) -> str | None:
        if not price_id:
            return None
        for tier, configured in self.price_ids.items():
            if configured and configured == price_id:
                return tier
        return None


def _config_row() -> dict[str, Any]:
    """The admin row's raw values, cached 60 s (the cache entry is deleted when the row is saved)."""
    cached = cache_get(caching.CONFIG_KEY)
    if not is_missing(cached) and isinstance(cached, dict):
        return cached
    row = (
        BillingConfig.objects.filter(pk=1)
        .values("enable_platform_payment", "stripe_price_id_pro", "stripe_price_id_business")
        .first()
    )
    values: dict[str, Any] = dict(row) if row else {}
    cache_set(caching.CONFIG_KEY, values, caching.CONFIG_TTL_S)
    return values


def billing_settings() -> BillingSettings:
    row = _config_row()
    enabled = row.get("enable_platform_payment")
    pro = row.get("stripe_price_id_pro")
    business = row.get("stripe_price_id_business")
    return BillingSettings(
        payment_enabled=bool(settings.ENABLE_PLATFORM_PAYMENT if enabled is None else enabled),
        price_ids={
            Tier.PRO: str(settings.STRIPE_PRICE_PRO if pro is None else pro),
            Tier.BUSINESS: str(settings.STRIPE_PRICE_BUSINESS if business is None else business),
        },
    )


# --- tier prices ------------------------------------------------------------------------------


def _price_amount_cached(price_id: str) -> int | None:
    cached = cache_get(caching.price_amount_key(price_id))
    return cached if not is_missing(cached) and isinstance(cached, int) else None


def _price_amount_fetch(price_id: str) -> int | None:
    """A Stripe price's ``unit_amount``, then cached 300 s; a failed lookup is logged and not cached."""
    try:
        amount = stripe_gateway.price_unit_amount(price_id)
    except PaymentProviderError:
        amount = None
    if amount is None:
        logger.warning("Failed to retrieve Stripe price %s — returning None (not cached)", price_id)
        return None
    cache_set(caching.price_amount_key(price_id), amount, caching.PRICE_AMOUNT_TTL_S)
    return amount


def tier_costs() -> dict[str, int]:
    """Monthly cost of every tier in cents (FREE and ENTERPRISE cost 0).

    PRO and BUSINESS come from their Stripe prices (cached; the misses fetched
    concurrently); without payments or a configured price, from
    ``BILLING_TIER_PRICES_CENTS``; else (or when Stripe fails) 0.
    """
    config = billing_settings()
    fallback: dict[str, Any] = settings.BILLING_TIER_PRICES_CENTS
    costs: dict[str, int] = {Tier.FREE: 0, Tier.PRO: 0, Tier.BUSINESS: 0, Tier.ENTERPRISE: 0}
    missing: dict[str, str] = {}
    for tier in PAID_TIERS:
        price_id = config.price_for_tier(tier) if config.payment_enabled else ""
        if not price_id:
            costs[tier] = max(0, int(fallback.get(tier, 0) or 0))
            continue
        amount = _price_amount_cached(price_id)
        if amount is None:
            missing[tier] = price_id
        else:
            costs[tier] = amount
    if len(missing) == 1:
        fetched = {name: _price_amount_fetch(price) for name, price in missing.items()}
    elif missing:
        with ThreadPoolExecutor(max_workers=len(missing), thread_name_prefix="stripe-price") as pool:
            fetched = dict(zip(missing, pool.map(_price_amount_fetch, missing.values()), strict=True))
    else:
        fetched = {}
    for name, amount_or_none in fetched.items():
        costs[name] = amount_or_none or 0
    return costs


# --- subscriptions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingChange:
    """A tier change Stripe will apply later: a schedule's next phase, or a cancellation."""

    tier: str
    effective_at: datetime | None


def _pending_from_stripe(account: CustomerAccount, config: BillingSettings) -> PendingChange | None:
    if not account.stripe_customer_id:
        return None
    sub = stripe_gateway.first_active_subscription(account.stripe_customer_id)
    if sub is None:
        return None
    if sub.schedule_id:
        # Read the schedule itself, so schedules made in the Stripe dashboard report too.
        schedule = stripe_gateway.schedule_retrieve(sub.schedule_id)
        phase = schedule.next_phase()
        if phase is None:
            return None
        tier = config.tier_for_price(phase.price_id)
        if tier is None:
            logger.warning("Unknown pending state: schedule %s moves to unknown price %s", schedule.id, phase.price_id)
            return None
        return PendingChange(tier=tier, effective_at=phase.start_date)
    if sub.cancel_at_period_end:
        return PendingChange(tier=Tier.FREE, effective_at=sub.current_period_end)
    return None


def subscription_pending_change_get(*, user: User) -> PendingChange | None:
    """The user's pending tier change, cached 30 s: a schedule's next phase, else ``cancel_at_period_end`` (→ FREE).

    Raises ``PaymentProviderError`` when Stripe cannot be read (never cached); the
    cache is deleted by every tier change and subscription POST.
    """
    key = caching.pending_change_key(user.pk)
    cached = cache_get(key)
    if not is_missing(cached) and isinstance(cached, dict):
        if not cached.get("tier"):
            return None
        effective = cached.get("effective_at")
        return PendingChange(tier=cached["tier"], effective_at=datetime.fromisoformat(effective) if effective else None)
    config = billing_settings()
    account = account_get_for_user(user=user)
    pending = _pending_from_stripe(account, config) if account is not None and config.payment_enabled else None
    value: dict[str, Any] = {"tier": None, "effective_at": None}
    if pending is not None:
        value = {
            "tier": pending.tier,
            "effective_at": pending.effective_at.isoformat() if pending.effective_at else None,
        }
    cache_set(key, value, caching.PENDING_CHANGE_TTL_S)
    return pending


def proration_credit_cents(*, account: CustomerAccount | None, monthly_cost_cents: int, now: datetime) -> int:
    """The unused share of the current paid period, ``floor(cost × remaining / period)``, from our Stripe mirror."""
    if account is None or not account.stripe_subscription_id or monthly_cost_cents <= 0:
        return 0
    if account.subscription_status not in stripe_gateway.ACTIVE_STATUSES:
        return 0
    start, end = account.current_period_start, account.current_period_end
    if start is None or end is None or end <= start or now >= end:
        return 0
    remaining = (end - max(now, start)).total_seconds()
    period = (end - start).total_seconds()
    return int(monthly_cost_cents * remaining // period)


@dataclass(frozen=True)
class SubscriptionStatus:
    tier: str
    monthly_cost: int
    tier_costs: dict[str, int]
    proration_credit_cents: int
    pending_tier: str | None
    pending_tier_effective_at: datetime | None
    url: str = ""


def subscription_status(*, user: User, url: str = "") -> SubscriptionStatus:
    """``GET /api/billing/subscription``. A failed pending-change read is logged and reported as none."""
    account = account_get_for_user(user=user)
    tier = account.tier if account is not None else Tier.FREE
    costs = tier_costs()
    monthly = costs.get(tier, 0)
    try:
        pending = subscription_pending_change_get(user=user)
    except PaymentProviderError:
        logger.warning("Could not read the pending subscription change", extra={"user_id": user.pk})
        pending = None
    return SubscriptionStatus(
        tier=tier,
        monthly_cost=monthly,
        tier_costs=costs,
        proration_credit_cents=proration_credit_cents(account=account, monthly_cost_cents=monthly, now=timezone.now()),
        pending_tier=pending.tier if pending else None,
        pending_tier_effective_at=pending.effective_at if pending else None,
        url=url,
    )
