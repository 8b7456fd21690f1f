"""Billing writes. Other apps import from here (never from the submodules' internals).

- credits: ``credits_spend`` (charge), ``credits_grant``, ``credits_top_up``, ``credits_refund``,
  ``credits_adjust``, ``credits_claw_back``
- tiers: ``account_tier_set``, ``subscription_change``, ``subscription_pending_release``
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
    account_tier_set,
    subscription_change,
    subscription_drift_check,
    subscription_pending_release,
    subscriptions_cancel_for_customer,
    subscriptions_cleanup_stale,
)

__all__ = [
    "LedgerResult",
    "account_get_or_create",
    "account_lock",
    "subscriptions_cancel_for_customer",
    "credits_adjust",
    "credits_claw_back",
    "credits_grant",
    "credits_refund",
    "credits_spend",
    "credits_top_up",
    "credits_top_up_checkout_create",
    "redirect_urls_validate",
    "subscription_pending_release",
    "account_tier_set",
    "stripe_customer_get_or_create",
    "subscription_change",
    "subscription_drift_check",
    "subscriptions_cleanup_stale",
]
