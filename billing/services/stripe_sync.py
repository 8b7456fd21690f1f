"""Applying Stripe's state to ours: the work behind each handler of ``POST /api/billing/stripe/webhook``.

Every function here runs inside the webhook's transaction (the ``StripeEvent``
insert and the handler commit or roll back together) and locks the account row
before comparing and writing. Stripe delivers late, twice and out of order, so:
subscription events older than ``subscription_synced_at`` are ignored, ledger
writes carry idempotency keys, and an ENTERPRISE tier is never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from billing import caching, stripe_gateway
from billing.models import CheckoutRecord, CreditTransaction, CustomerAccount, Tier
from billing.selectors import billing_settings
from copilot_site.core.caching import cache_delete

from .credits import account_get_or_create, credits_claw_back, credits_top_up
from .subscriptions import account_tier_set

logger = logging.getLogger(__name__)

_MIRROR_FIELDS = (
    "stripe_subscription_id", "subscription_status", "current_period_start", "current_period_end",
    "pending_tier", "pending_tier_effective_at",
)  # fmt: skip


def _enqueue_cleanup(customer_id: str, keep_subscription_id: str) -> None:
    from billing.tasks import subscription_cleanup_stale as subscription_cleanup_stale_task

    try:
        subscription_cleanup_stale_task.delay(customer_id, keep_subscription_id)
    except Exception:
        logger.warning(
            "Could not enqueue the stale subscription cleanup",
            extra={"customer_id": customer_id, "subscription_id": keep_subscription_id},
            exc_info=True,
        )


def account_for_stripe_customer(*, customer_id: str | None, metadata: Mapping[str, str]) -> CustomerAccount | None:
    """Our account for a Stripe customer id, else for ``metadata.user_id`` (linking the customer if unset)."""
    if customer_id:
        account = CustomerAccount.objects.filter(stripe_customer_id=customer_id).first()
        if account is not None:
            return account
    raw_user_id = metadata.get("user_id", "")
    if not raw_user_id.isdigit():
        return None
    user = get_user_model().objects.filter(pk=int(raw_user_id)).first()
    if user is None:
        return None
    account = account_get_or_create(user=user)
    if customer_id and not account.stripe_customer_id:
        CustomerAccount.objects.filter(pk=account.pk, stripe_customer_id__isnull=True).update(
            stripe_customer_id=customer_id
        )
        account.refresh_from_db()
    elif customer_id and account.stripe_customer_id != customer_id:
        logger.warning(
            "Stripe customer %s does not match the account's customer %s",
            customer_id,
            account.stripe_customer_id,
            extra={"user_id": raw_user_id},
        )
    return account


def _lock(account: CustomerAccount) -> CustomerAccount:
    return CustomerAccount.objects.select_for_update().select_related("user").get(pk=account.pk)


def subscription_sync_from_stripe(
    *, subscription: stripe_gateway.Subscription, event_created: datetime, deleted: bool = False, live: bool = False
) -> str:
    """Bring the user's tier and our Stripe mirror in line with one subscription.

    ``live`` marks a subscription just read from Stripe (always current), as opposed
    to an event's snapshot, which is ignored when older than the last one applied.
    Returns what happened (for logs and tests).
    """
    found = account_for_stripe_customer(customer_id=subscription.customer_id, metadata=subscription.metadata)
    if found is None:
        logger.warning("No account for Stripe subscription %s (customer %s)", subscription.id, subscription.customer_id)
        return "unknown_customer"
    with transaction.atomic():
        account = _lock(found)
        if account.tier == Tier.ENTERPRISE:
            logger.info("Ignoring subscription %s for an ENTERPRISE account", subscription.id)
            return "enterprise"
        synced_at = account.subscription_synced_at
        if not live and synced_at is not None and event_created < synced_at:
            logger.info(
                "Ignoring stale subscription event for %s (event %s, synced %s)",
                subscription.id,
                event_created.isoformat(),
                synced_at.isoformat(),
            )
            return "stale"
        outcome = _apply_subscription(account, subscription, deleted=deleted)
        if outcome in ("applied", "ended", "status_only"):
            account.subscription_synced_at = max(synced_at, event_created) if synced_at else event_created
            account.save(update_fields=[*_MIRROR_FIELDS, "subscription_synced_at", "updated_at"])
        user_id = int(account.user_id)
        transaction.on_commit(lambda: cache_delete(caching.pending_change_key(user_id)))
        return outcome


def _apply_subscription(account: CustomerAccount, sub: stripe_gateway.Subscription, *, deleted: bool) -> str:
    """Precondition: ``account`` is locked and not ENTERPRISE. Saves nothing but the tier."""
    if deleted or sub.status in stripe_gateway.ENDED_STATUSES:
        others = [s for s in stripe_gateway.active_subscriptions(sub.customer_id) if s.id != sub.id]
        if others:
            # An old subscription ending after a newer one started: out of order.
            logger.info("Ignoring the end of subscription %s: %s is active", sub.id, others[0].id)
            return "out_of_order"
        account_tier_set(
            user=account.user, tier=Tier.FREE, reason=f"Stripe subscription {sub.id} {sub.status or 'deleted'}",
            check_drift=False,
        )  # fmt: skip
        account.tier = Tier.FREE
        account.subscription_status = sub.status or "canceled"
        account.current_period_start = account.current_period_end = None
        account.pending_tier = account.pending_tier_effective_at = None
        return "ended"
    if not sub.is_active:
        account.subscription_status = sub.status  # past_due, incomplete: the tier stays
        account.stripe_subscription_id = sub.id
        return "status_only"
    tier = billing_settings().tier_for_price(sub.price_id)
    if tier is None:
        logger.warning("Unknown Stripe price %s on subscription %s; tier unchanged", sub.price_id, sub.id)
        return "unknown_price"
    if tier != account.tier:
        account_tier_set(user=account.user, tier=tier, reason=f"Stripe subscription {sub.id}", check_drift=False)
        account.tier = tier
    account.stripe_subscription_id = sub.id
    account.subscription_status = sub.status
    account.current_period_start = sub.current_period_start
    account.current_period_end = sub.current_period_end
    if sub.cancel_at_period_end:
        account.pending_tier, account.pending_tier_effective_at = Tier.FREE, sub.current_period_end
    elif not sub.schedule_id:
        account.pending_tier = account.pending_tier_effective_at = None
    # With a schedule attached the mirror keeps what our POST recorded; the API
    # reads the schedule itself (selectors.subscription_pending_change_get).
    customer_id, keep = sub.customer_id, sub.id
    transaction.on_commit(lambda: _enqueue_cleanup(customer_id, keep))
    return "applied"


def subscription_resync_for_customer(*, customer_id: str | None, event_created: datetime) -> str:
    """After a schedule is released or completed: sync from the customer's current subscription."""
    if not customer_id:
        return "ignored"
    account = CustomerAccount.objects.filter(stripe_customer_id=customer_id).first()
    if account is None:
        logger.warning("No account for Stripe customer %s", customer_id)
        return "unknown_customer"
    sub = stripe_gateway.first_active_subscription(customer_id)
    if sub is None:
        CustomerAccount.objects.filter(pk=account.pk).update(pending_tier=None, pending_tier_effective_at=None)
        return "no_active_subscription"
    return subscription_sync_from_stripe(subscription=sub, event_created=event_created, live=True)


def checkout_session_fulfil(*, session: stripe_gateway.CheckoutSession, event_created: datetime) -> str:
    """A completed (or asynchronously paid) Checkout: grant top-up credits or start the subscription."""
    if not session.id:
        logger.warning("Checkout session event without an id; ignored")
        return "ignored"
    if session.mode == "payment":
        return _fulfil_top_up(session)
    if session.mode == "subscription":
        account = account_for_stripe_customer(customer_id=session.customer_id, metadata=session.metadata)
        if account is None:
            logger.warning("No account for checkout session %s", session.id)
            return "unknown_customer"
        CheckoutRecord.objects.filter(stripe_checkout_session_id=session.id).update(
            status=CheckoutRecord.Status.FULFILLED, fulfilled_at=timezone.now()
        )
        if not session.subscription_id:
            return "no_subscription"
        sub = stripe_gateway.subscription_retrieve(session.subscription_id)
        return subscription_sync_from_stripe(subscription=sub, event_created=event_created, live=True)
    return "ignored"


def _fulfil_top_up(session: stripe_gateway.CheckoutSession) -> str:
    if session.metadata.get("kind") != "credit_top_up":
        return "ignored"
    if session.payment_status != "paid":
        logger.info("Checkout %s completed without payment yet (%s)", session.id, session.payment_status)
        return "awaiting_payment"
    amount = session.amount_total or 0
    account = account_for_stripe_customer(customer_id=session.customer_id, metadata=session.metadata)
    if account is None or amount <= 0:
        logger.warning(
            "Cannot fulfil top-up %s (account found: %s, amount %s)", session.id, account is not None, amount
        )
        return "ignored"
    record, _ = CheckoutRecord.objects.select_for_update().get_or_create(
        stripe_checkout_session_id=session.id,
        defaults={"user_id": account.user_id, "kind": CheckoutRecord.Kind.TOP_UP, "amount_cents": amount},
    )
    credits_top_up(
        user=account.user,
        amount_cents=amount,
        checkout_session_id=session.id,
        metadata={"payment_intent_id": session.payment_intent_id or ""},
    )
    if record.status != CheckoutRecord.Status.FULFILLED:
        record.status = CheckoutRecord.Status.FULFILLED
        record.stripe_payment_intent_id = session.payment_intent_id
        record.amount_paid_cents = amount
        record.fulfilled_at = timezone.now()
        record.save()
    return "fulfilled"


def _claw_back(*, record: CheckoutRecord, amount_cents: int, idempotency_key: str, kind: str, reason: str) -> str:
    """Precondition: ``record`` is locked. Never claws back more than was paid for it."""
    wanted = max(0, min(amount_cents, record.amount_paid_cents - record.clawed_back_cents))
    result = credits_claw_back(
        user=record.user,
        amount_cents=wanted,
        idempotency_key=idempotency_key,
        kind=kind,
        reason=reason,
        metadata={"checkout_session_id": record.stripe_checkout_session_id or "", "requested_cents": amount_cents},
    )
    if result.created and wanted:
        record.clawed_back_cents += wanted
        record.save(update_fields=["clawed_back_cents", "updated_at"])
    return "clawed_back" if result.created else "already_applied"


def _top_up_for_payment(payment_intent_id: str | None) -> CheckoutRecord | None:
    if not payment_intent_id:
        return None
    return (
        CheckoutRecord.objects.select_for_update()
        .select_related("user")
        .filter(kind=CheckoutRecord.Kind.TOP_UP, stripe_payment_intent_id=payment_intent_id)
        .first()
    )


def payment_refunded(*, refund: Mapping[str, Any]) -> str:
    """``refund.created``: deduct the refunded credits (credit purchases only)."""
    record = _top_up_for_payment(stripe_gateway.reference_id(refund.get("payment_intent")))
    amount = refund.get("amount")
    if record is None or not isinstance(amount, int) or not refund.get("id"):
        return "ignored"
    if refund.get("status") in ("failed", "canceled"):
        return "ignored"
    return _claw_back(
        record=record,
        amount_cents=amount,
        idempotency_key=f"refund:{refund['id']}",
        kind=CreditTransaction.Kind.REFUND,
        reason=f"Stripe refund {refund['id']} of a credit purchase",
    )


def dispute_opened(*, dispute: Mapping[str, Any]) -> str:
    """``charge.dispute.created``: a zero-amount DISPUTE note on the ledger."""
    record = _top_up_for_payment(stripe_gateway.reference_id(dispute.get("payment_intent")))
    if record is None or not dispute.get("id"):
        return "ignored"
    credits_claw_back(
        user=record.user,
        amount_cents=0,
        idempotency_key=f"dispute-opened:{dispute['id']}",
        kind=CreditTransaction.Kind.DISPUTE,
        reason=f"Stripe dispute {dispute['id']} opened ({dispute.get('reason') or 'no reason'})",
        metadata={"amount_cents": dispute.get("amount"), "checkout_session_id": record.stripe_checkout_session_id},
    )
    return "noted"


def dispute_closed(*, dispute: Mapping[str, Any]) -> str:
    """``charge.dispute.closed``: a lost dispute deducts the disputed credits."""
    record = _top_up_for_payment(stripe_gateway.reference_id(dispute.get("payment_intent")))
    amount = dispute.get("amount")
    if record is None or not dispute.get("id") or dispute.get("status") != "lost" or not isinstance(amount, int):
        return "ignored"
    return _claw_back(
        record=record,
        amount_cents=amount,
        idempotency_key=f"dispute-lost:{dispute['id']}",
        kind=CreditTransaction.Kind.DISPUTE,
        reason=f"Stripe dispute {dispute['id']} lost",
    )


def invoice_payment_failed(*, customer_id: str | None, invoice_id: str, event_created: datetime) -> str:
    """Mark the account past due; the tier stays until Stripe cancels the subscription or marks it unpaid."""
    account = (
        CustomerAccount.objects.select_for_update().filter(stripe_customer_id=customer_id).first()
        if customer_id
        else None
    )
    if account is None:
        return "ignored"
    logger.warning("Invoice %s payment failed", invoice_id, extra={"user_id": account.user_id})
    if account.payment_failed_at is None or account.payment_failed_at < event_created:
        account.payment_failed_at = event_created
        account.save(update_fields=["payment_failed_at", "updated_at"])
    return "marked_past_due"


def invoice_paid(*, customer_id: str | None, event_created: datetime) -> str:
    """A paid invoice clears the past-due mark, unless a later failure set it."""
    account = (
        CustomerAccount.objects.select_for_update().filter(stripe_customer_id=customer_id).first()
        if customer_id
        else None
    )
    if account is None or account.payment_failed_at is None:
        return "ignored"
    if account.payment_failed_at > event_created:
        return "stale"
    account.payment_failed_at = None
    account.save(update_fields=["payment_failed_at", "updated_at"])
    return "cleared"
