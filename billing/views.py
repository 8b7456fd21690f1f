"""Template views: the billing page (plans, credits). It is a shell; `static/billing/billing.js`
reads and changes everything through the billing REST API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from copilot_site.accounts.request_user import authenticated_user

from .models import Tier
from .selectors import account_get_for_user

# What each plan gives, as a multiple of FREE's usage limits. These mirror
# ``ratelimits.selectors.TIER_MULTIPLIERS``, spelled here because billing never
# imports ratelimits (the apps depend one way: chat → ratelimits → billing).
TIER_MULTIPLES: dict[str, int] = {Tier.FREE: 1, Tier.PRO: 5, Tier.BUSINESS: 20}


@login_required
def billing_page(request: HttpRequest) -> HttpResponse:
    account = account_get_for_user(user=authenticated_user(request))
    period_end = account.current_period_end if account is not None else None
    plans = [
        {"tier": tier.value, "label": tier.label, "multiple": TIER_MULTIPLES[tier.value]}
        for tier in (Tier.FREE, Tier.PRO, Tier.BUSINESS)
    ]
    return render(
        request,
        "billing/billing.html",
        {
            "plans": plans,
            "period_end": period_end.isoformat() if period_end else "",
            # An admin-granted paid tier has no Stripe subscription: a downgrade applies at once.
            "has_subscription": bool(account is not None and account.stripe_subscription_id),
        },
    )
