"""Django-cache keys billing owns or invalidates (read and written through ``copilot_site.core.caching``)."""

from __future__ import annotations

CONFIG_KEY = "billing:config"
CONFIG_TTL_S = 60
PRICE_AMOUNT_TTL_S = 300
PENDING_CHANGE_TTL_S = 30


def price_amount_key(price_id: str) -> str:
    return f"billing:price_amount:{price_id}"


def pending_change_key(user_id: int) -> str:
    return f"billing:pending_change:{user_id}"


def ratelimits_tier_key(user_id: int) -> str:
    # ratelimits caches each user's tier under this key; billing only deletes it when
    # the tier changes, so the string is spelled here (billing never imports ratelimits).
    return f"ratelimits:tier:{user_id}"
