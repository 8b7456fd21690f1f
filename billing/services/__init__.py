"""Billing writes. Other apps import from here (never from the submodules' internals).

- credits: ``credits_spend`` (charge), ``credits_grant``, ``credits_top_up``, ``credits_refund``,
  ``credits_adjust``, ``credits_claw_back``
- tiers: ``set_user_tier``, ``subscription_change``, ``release_pending_subscription_schedule``
- checkout: ``credits_top_up_checkout_create``, ``stripe_customer_get_or_create``
- webhook work lives in ``billing.services.stripe_sync`` (called by ``billing.webhooks``)
"""

from __future__ import annotations

from .checkout import credits_top_up_checkout_create, redirect_urls_validate, stripe_customer_get_or_create
from .credits import (
    LedgerResult,
    account_get_or_create,
    account_lock,
    credits_adjust,
    credits_claw_back,
    credits_grant,
    credits_refund,
    credits_spend,
    credits_top_up,
)
from .subscriptions import (
    cancel_customer_subscriptions,
    release_pending_subscription_schedule,
    set_user_tier,
    subscription_change,
    subscription_drift_check,
    subscriptions_cleanup_stale,
)

__all__ = [
    "LedgerResult",
    "account_get_or_create",
    "account_lock",
    "cancel_customer_subscriptions",
    "credits_adjust",
    "credits_claw_back",
    "credits_grant",
    "credits_refund",
    "credits_spend",
    "credits_top_up",
    "credits_top_up_checkout_create",
    "redirect_urls_validate",
    "release_pending_subscription_schedule",
    "set_user_tier",
    "stripe_customer_get_or_create",
    "subscription_change",
    "subscription_drift_check",
    "subscriptions_cleanup_stale",
]
