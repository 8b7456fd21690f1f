"""Celery adapters for billing: primitive ids in, a service call, failures logged and contained."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)


@shared_task(name="billing.subscription_drift_check", ignore_result=True)
def subscription_drift_check(user_id: int) -> None:
    """After a tier override: warn when the tier no longer matches the Stripe subscription.

    Advisory: Stripe is asked with a short timeout and no retries, and any failure
    is logged here, never raised: a drift check never affects the tier change behind it.
    """
    from billing.services import subscription_drift_check as check

    try:
        check(user_id=user_id, timeout_s=settings.BILLING_DRIFT_CHECK_TIMEOUT_S)
    except Exception:
        logger.warning("Subscription drift check failed", extra={"user_id": user_id}, exc_info=True)


@shared_task(name="billing.subscription_cleanup_stale", ignore_result=True)
def subscription_cleanup_stale(customer_id: str, keep_subscription_id: str) -> None:
    """When a subscription becomes active, cancel the customer's others (no double billing)."""
    from billing.selectors import billing_settings
    from billing.services import subscriptions_cleanup_stale

    if not billing_settings().payment_enabled:
        return
    subscriptions_cleanup_stale(customer_id=customer_id, keep_subscription_id=keep_subscription_id)
