"""Django-cache keys of the limit resolution (read and written through ``copilot_site.core.caching``).

The limits behind a pre-turn check are read in one ``cache_get_many`` (one Redis
round trip); when the cache is down the check reads the database instead.
"""

from __future__ import annotations

# The user's tier and past-due flag. billing deletes this key by name when it
# changes a tier (billing/caching.py), so a new tier applies at the next check.
TIER_TTL_S = 300
TIER_LIMITS_KEY = "ratelimits:tier_limits"
TIER_LIMITS_TTL_S = 60
USER_LIMITS_TTL_S = 300


def tier_key(user_id: int) -> str:
    return f"ratelimits:tier:{user_id}"


def user_limits_key(user_id: int) -> str:
    """The user's override and personal cap (both nullable), as one entry."""
    return f"ratelimits:user_limits:{user_id}"
