"""Subscription tiers: the ``POST /api/billing/subscription`` state machine, the Stripe helpers, tier changes.

Stripe is called outside any database transaction, so no row lock or SQLite write
lock is held across the network; the database follows Stripe through the webhook
(``subscription_sync_from_stripe``), which is the source of truth for paid tiers.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction

from billing import caching, stripe_gateway
from billing.errors import (
    BillingUnprocessable,
    PaymentProviderError,
    SubscriptionChangeForbidden,
)
from billing.models import CheckoutRecord, CustomerAccount, Tier, TierChange
from billing.selectors import BillingSettings, billing_settings
from copilot_site.core.caching import cache_delete

from .checkout import checkout_open, redirect_urls_validate
from .credits import account_get_or_create, account_lock

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

ENTERPRISE_FORBIDDEN = "ENTERPRISE subscription changes must be managed by an administrator"
CANCEL_PENDING_FAILED = (
    "Unable to cancel the pending subscription change right now. Please try again or contact support."
)
CANCEL_FAILED = "Unable to cancel your subscription right now. Please try again or contact support."
UPDATE_FAILED = "Unable to update your subscription right now. Please try again or contact support."
CHECKOUT_FAILED = "Unable to start checkout right now. Please try again or contact support."
URLS_REQUIRED = "success_url and cancel_url are required for paid tier upgrades"


# --- tier changes ----------------------------------------------------------------------------


def _enqueue_drift_check(user_id: int) -> None:
    from billing.tasks import subscription_drift_check as subscription_drift_check_task

    try:
        subscription_drift_check_task.delay(user_id)
    except Exception:
        # Advisory only: a broker outage must never fail or delay the tier change.
        logger.warning("Could not enqueue the subscription drift check", extra={"user_id": user_id}, exc_info=True)


def _invalidate_user_caches(user_id: int) -> None:
    cache_delete(caching.ratelimits_tier_key(user_id), caching.pending_change_key(user_id))


@transaction.atomic
def account_tier_set(
    *, user: User, tier: str, reason: str, actor: User | None = None, check_drift: bool = True
) -> CustomerAccount:
    """Set the user's tier (admin, staff API, webhook and direct changes all come here).

    Records a ``TierChange``, then after commit deletes the tier caches
    (``ratelimits:tier:{id}``, the pending-change cache) and, unless
    ``check_drift=False`` (the webhook, which follows Stripe), enqueues a check that
    warns when the new tier no longer matches the user's Stripe subscription.
    """
    if tier not in Tier.values:
        raise ValueError(f"Unknown tier {tier!r}")
    account = account_lock(user=user)
    previous = account.tier
    if previous != tier:
        account.tier = tier
        account.save(update_fields=["tier", "updated_at"])
        TierChange.objects.create(user=user, previous_tier=previous, tier=tier, reason=reason[:255], actor=actor)
        logger.info(
            "Tier changed", extra={"user_id": user.pk, "from_tier": previous, "to_tier": tier, "reason": reason}
        )
    user_id = int(user.pk)
    transaction.on_commit(lambda: _invalidate_user_caches(user_id))
    if check_drift:
        transaction.on_commit(lambda: _enqueue_drift_check(user_id))
    return account


def subscription_drift_check(*, user_id: int, timeout_s: float) -> bool:
    """Warn when the user's tier differs from their Stripe subscription's price. Never raises.

    Returns True when drift was found.
    """
    account = CustomerAccount.objects.filter(user_id=user_id).first()
    config = billing_settings()
    if account is None or not account.stripe_customer_id or not config.payment_enabled:
        return False
    try:
        subs = stripe_gateway.active_subscriptions(account.stripe_customer_id, timeout_s=timeout_s, max_retries=0)
    except PaymentProviderError:
        logger.warning("Drift check could not read Stripe", extra={"user_id": user_id})
        return False
    if not subs:
        return False
    sub = subs[0]
    expected = config.price_for_tier(account.tier) or None
    if sub.price_id == expected:
        return False
    logger.warning(
        "Admin tier override will drift from Stripe: "
        "user=%s admin_tier=%s stripe_sub=%s stripe_price=%s expected_price=%s",
        user_id,
        account.tier,
        sub.id,
        sub.price_id,
        expected,
    )
    return True


# --- Stripe helpers ----------------------------------------------------------------------------


def _active_subscription(account: CustomerAccount) -> stripe_gateway.Subscription | None:
    if not account.stripe_customer_id:
        return None
    return stripe_gateway.first_active_subscription(account.stripe_customer_id)


def _schedule_release(schedule_id: str) -> None:
    """Release a schedule; one already released, canceled or completed counts as released."""
    try:
        stripe_gateway.schedule_release(schedule_id)
    except PaymentProviderError:
        schedule = stripe_gateway.schedule_retrieve(schedule_id)
        if not schedule.is_terminal:
            raise
        logger.info("Schedule already %s; nothing to release", schedule.status, extra={"schedule_id": schedule_id})


def _pending_clear(sub: stripe_gateway.Subscription) -> bool:
    """Clear both a schedule and ``cancel_at_period_end`` on ``sub``; True if anything was pending."""
    cleared = False
    if sub.schedule_id:
        _schedule_release(sub.schedule_id)
        cleared = True
    if sub.cancel_at_period_end:
        try:
            stripe_gateway.subscription_set_cancel_at_period_end(subscription_id=sub.id, cancel=False)
        except PaymentProviderError:
            if cleared:
                logger.warning(
                    "Pending change only partly cleared: schedule released, cancel_at_period_end still set",
                    extra={"subscription_id": sub.id, "schedule_id": sub.schedule_id},
                )
            raise
        cleared = True
    return cleared


def _mirror_pending(account: CustomerAccount, tier: str | None, effective_at: datetime | None) -> None:
    CustomerAccount.objects.filter(pk=account.pk).update(pending_tier=tier, pending_tier_effective_at=effective_at)


def subscription_pending_release(*, user: User) -> bool:
    """Cancel any pending change: release the schedule (a terminal one counts) and clear ``cancel_at_period_end``.

    Idempotent; returns False when nothing was pending. Raises ``PaymentProviderError``.
    """
    account = account_get_or_create(user=user)
    try:
        sub = _active_subscription(account)
        released = _pending_clear(sub) if sub is not None else False
    finally:
        cache_delete(caching.pending_change_key(int(user.pk)))
    if released:
        _mirror_pending(account, None, None)
    return released


def subscriptions_cleanup_stale(*, customer_id: str, keep_subscription_id: str) -> list[str]:
    """Cancel the customer's other active/trialing subscriptions, best effort (no double billing)."""
    cancelled: list[str] = []
    try:
        subs = stripe_gateway.active_subscriptions(customer_id)
    except PaymentProviderError:
        logger.warning("Stale subscription cleanup could not list subscriptions", extra={"customer_id": customer_id})
        return cancelled
    for sub in subs:
        if sub.id == keep_subscription_id:
            continue
        try:
            stripe_gateway.subscription_cancel_now(sub.id)
        except PaymentProviderError:
            logger.warning("Could not cancel a stale subscription", extra={"subscription_id": sub.id})
            continue
        logger.warning(
            "Cancelled stale subscription %s of customer %s (kept %s)", sub.id, customer_id, keep_subscription_id
        )
        cancelled.append(sub.id)
    return cancelled


def subscriptions_cancel_for_customer(*, customer_id: str) -> list[str]:
    """Cancel every active and trialing subscription now.

    Errors propagate, so a caller never changes the DB tier after a Stripe failure.
    """
    cancelled: list[str] = []
    for sub in stripe_gateway.active_subscriptions(customer_id):
        stripe_gateway.subscription_cancel_now(sub.id)
        cancelled.append(sub.id)
    return cancelled


# --- the POST state machine --------------------------------------------------------------------------


def _checkout_for_tier(*, user: User, tier: str, success_url: str, cancel_url: str, config: BillingSettings) -> str:
    if not success_url or not cancel_url:
        raise BillingUnprocessable(URLS_REQUIRED)
    redirect_urls_validate(success_url, cancel_url)
    price_id = config.price_for_tier(tier)
    if not price_id:
        raise BillingUnprocessable(f"No Stripe price configured for tier {tier}")
    return checkout_open(
        user=user,
        record_fields={"kind": CheckoutRecord.Kind.SUBSCRIPTION, "tier": tier},
        mode="subscription",
        line_item={"price": price_id, "quantity": 1},
        metadata={"tier": tier},
        success_url=success_url,
        cancel_url=cancel_url,
    )


def _change_paid_subscription(
    *, account: CustomerAccount, sub: stripe_gateway.Subscription, tier: str, config: BillingSettings
) -> None:
    target_price = config.price_for_tier(tier)
    if not target_price:
        raise BillingUnprocessable(f"No Stripe price configured for tier {tier}")
    if Tier.rank(tier) > Tier.rank(account.tier):
        # Upgrade: release any scheduled downgrade (and cancellation) first, so the
        # upgrade wins, then switch the price now with immediate proration.
        _pending_clear(sub)
        stripe_gateway.subscription_change_price(subscription=sub, price_id=target_price)
        _mirror_pending(account, None, None)
        return
    # Downgrade at period end: pre-clear (release a schedule, undo a cancellation),
    # then a two-phase schedule. No mid-cycle demotion.
    _pending_clear(sub)
    current_price = sub.price_id or config.price_for_tier(account.tier)
    stripe_gateway.schedule_create_downgrade(
        subscription=sub,
        current_price_id=current_price,
        target_price_id=target_price,
        # Unique per request: a downgrade, "keep", downgrade again within Stripe's
        # 24 h key window must create a second schedule, not replay the first.
        idempotency_key=f"schedule-create-{account.pk}-{sub.id}-{uuid.uuid4().hex}",
    )
    _mirror_pending(account, tier, sub.current_period_end)


def subscription_change(*, user: User, tier: str, success_url: str = "", cancel_url: str = "") -> str:
    """``POST /api/billing/subscription``: move the user towards ``tier``; returns a Checkout URL or "".

    Evaluated in this order, the first match wins: ENTERPRISE → same tier → FREE → payment off →
    paid→paid → FREE→paid. Stripe failures raise ``PaymentProviderError`` worded
    for the operation (502); the DB tier only changes directly where no Stripe
    subscription exists, otherwise through the webhook.
    """
    if tier not in (Tier.FREE, Tier.PRO, Tier.BUSINESS):
        raise BillingUnprocessable(f"Subscription not available for tier {tier}")
    account = account_get_or_create(user=user)
    config = billing_settings()
    try:
        return _subscription_change(
            user=user, account=account, tier=tier, success_url=success_url, cancel_url=cancel_url, config=config
        )
    finally:
        # Every POST invalidates the pending change, whatever happened at Stripe.
        cache_delete(caching.pending_change_key(int(user.pk)))


def _subscription_change(
    *, user: User, account: CustomerAccount, tier: str, success_url: str, cancel_url: str, config: BillingSettings
) -> str:
    current = account.tier
    if current == Tier.ENTERPRISE:
        raise SubscriptionChangeForbidden(ENTERPRISE_FORBIDDEN)

    if tier == current:
        # "Keep my current tier" is the cancel-pending operation.
        if config.payment_enabled:
            try:
                subscription_pending_release(user=user)
            except PaymentProviderError as exc:
                raise exc.with_detail(CANCEL_PENDING_FAILED) from None
        return ""

    if tier == Tier.FREE:
        if not config.payment_enabled:
            account_tier_set(user=user, tier=Tier.FREE, reason="Downgrade requested (payments off)")
            return ""
        try:
            sub = _active_subscription(account)
            if sub is None:
                account_tier_set(user=user, tier=Tier.FREE, reason="Downgrade requested (no Stripe subscription)")
                return ""
            if sub.schedule_id:
                _schedule_release(sub.schedule_id)
            stripe_gateway.subscription_set_cancel_at_period_end(subscription_id=sub.id, cancel=True)
        except PaymentProviderError as exc:
            raise exc.with_detail(CANCEL_FAILED) from None
        # The tier stays until customer.subscription.deleted arrives at period end.
        _mirror_pending(account, Tier.FREE, sub.current_period_end)
        return ""

    if not config.payment_enabled:
        raise BillingUnprocessable(f"Subscription not available for tier {tier}")

    if current in (Tier.PRO, Tier.BUSINESS):
        try:
            sub = _active_subscription(account)
            if sub is None:
                account_tier_set(user=user, tier=tier, reason="Tier change requested (no Stripe subscription)")
                return ""
            _change_paid_subscription(account=account, sub=sub, tier=tier, config=config)
        except PaymentProviderError as exc:
            raise exc.with_detail(UPDATE_FAILED) from None
        return ""

    return _checkout_for_tier(user=user, tier=tier, success_url=success_url, cancel_url=cancel_url, config=config)
