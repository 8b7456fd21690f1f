"""Every Redis access of the rate limiter: the connection, key names, window ends,
the MULTI/EXEC blocks and the Lua scripts. Everything else calls these functions.

Functions take ``now`` (an aware datetime) so tests can freeze time; they raise
``redis.RedisError`` and leave the fail-open / fail-closed decision to the caller.

Keys, all under the deliberate ``copilot:cost:`` / ``copilot:`` prefixes (counters kept
under any other prefix, in older units, are never read)
and all with a TTL:
    copilot:cost:daily:{uid}:{YYYY-MM-DD}          spend today, until next 00:00 UTC
    copilot:cost:weekly:{uid}:{ISOYEAR}-W{WW}      spend this ISO week, until next Monday 00:00 UTC
    copilot:cost:hourly:{uid}:{YYYY-MM-DDTHH}      spend in one hour, for the pace estimate
    copilot:reset_lock:{uid}                       paid-reset lock, 10 s
    copilot:reset_count:{uid}:{YYYY-MM-DD}         paid resets today
    copilot:usage_warned:{uid}:{daily|weekly}:{window id}   usage warning already sent
    copilot:cost:known:{uid}:{ISOYEAR}-W{WW}       this Redis holds the user's windows of this week

Redis may lose the counters (a restart without persistence, a fail-over, eviction):
the ``known`` marker goes with them. The first check of a user without it rebuilds
both windows from the database's recorded spend (`spend_windows_rebuild`), so a
restart never gives anyone their spend back.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import redis
from django.conf import settings

Window = Literal["daily", "weekly"]

RESET_LOCK_TTL_S = 10
# The pace estimate looks at the current hour and the two before it.
PACE_BUCKETS = 3
HOURLY_BUCKET_TTL_S = (PACE_BUCKETS + 1) * 3600


# --- connection -------------------------------------------------------------------


@dataclass(frozen=True)
class _Store:
    client: redis.Redis[bytes]
    reset_daily: redis.commands.core.Script
    release_lock: redis.commands.core.Script
    rebuild: redis.commands.core.Script


# Compare-and-delete: a lock that expired and was taken by another request is
# not ours to release.
_RELEASE_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: daily, weekly, daily warning flag. ARGV: daily limit, weekly TTL (s).
# One script, so a turn recorded meanwhile is never lost between the DECRBY and
# the clamp (a MULTI cannot branch on the DECRBY result). The user gets one extra
# day's worth of weekly room (the weekly counter drops by the daily limit), never a
# negative counter.
_RESET_DAILY_LUA = """
redis.call('DEL', KEYS[1], KEYS[3])
local weekly = redis.call('DECRBY', KEYS[2], ARGV[1])
if weekly < 0 then
    redis.call('SET', KEYS[2], 0, 'KEEPTTL')
    weekly = 0
end
if redis.call('TTL', KEYS[2]) < 0 then
    redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return weekly
"""


# KEYS: daily, weekly, known marker. ARGV: daily and weekly spend recorded in the
# database, their TTLs (s). Only when the marker is missing: each window becomes the
# larger of what Redis holds (spend recorded since the loss, not yet in the database
# read) and the database's figure, and the marker is set. 1 when it rebuilt.
_REBUILD_LUA = """
if redis.call('EXISTS', KEYS[3]) == 1 then
    return 0
end
local daily = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(ARGV[1]))
local weekly = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[2]))
redis.call('SET', KEYS[1], daily, 'EX', ARGV[3])
redis.call('SET', KEYS[2], weekly, 'EX', ARGV[4])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[4])
return 1
"""


@functools.cache
def _store(url: str) -> _Store:
    # No retries: a dead server must fail the check fast, and the check fails open.
    pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30)
    client = redis.Redis(connection_pool=pool)
    return _Store(
        client=client,
        reset_daily=client.register_script(_RESET_DAILY_LUA),
        release_lock=client.register_script(_RELEASE_LOCK_LUA),
        rebuild=client.register_script(_REBUILD_LUA),
    )


def redis_client() -> redis.Redis[bytes]:
    """The module-level pooled client for ``settings.REDIS_URL``."""
    return _store(settings.REDIS_URL).client


# --- windows ----------------------------------------------------------------------


def _utc(now: datetime) -> datetime:
    return now.astimezone(UTC)


def daily_reset_at(now: datetime) -> datetime:
    """The next 00:00 UTC."""
    today = _utc(now).date()
    return datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)


def weekly_reset_at(now: datetime) -> datetime:
    """00:00 UTC of the next Monday; on a Monday that is 7 days later, never today."""
    today = _utc(now).date()
    monday = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=today.weekday())
    return monday + timedelta(days=7)


def reset_at(window: Window, now: datetime) -> datetime:
    return daily_reset_at(now) if window == "daily" else weekly_reset_at(now)


def ttl_until(end: datetime, now: datetime) -> int:
    """Seconds until ``end``, never less than 1 (a key must never be left without a TTL)."""
    return max(int((end - now).total_seconds()), 1)


def daily_window_id(now: datetime) -> str:
    return _utc(now).date().isoformat()


def weekly_window_id(now: datetime) -> str:
    iso = _utc(now).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


# --- keys -------------------------------------------------------------------------


def daily_key(user_id: int, now: datetime) -> str:
    return f"copilot:cost:daily:{user_id}:{daily_window_id(now)}"


def weekly_key(user_id: int, now: datetime) -> str:
    return f"copilot:cost:weekly:{user_id}:{weekly_window_id(now)}"


def _hour_start(now: datetime) -> datetime:
    return _utc(now).replace(minute=0, second=0, microsecond=0)


def hourly_key(user_id: int, hour_start: datetime) -> str:
    return f"copilot:cost:hourly:{user_id}:{hour_start.strftime('%Y-%m-%dT%H')}"


def known_key(user_id: int, now: datetime) -> str:
    return f"copilot:cost:known:{user_id}:{weekly_window_id(now)}"


def reset_lock_key(user_id: int) -> str:
    return f"copilot:reset_lock:{user_id}"


def reset_count_key(user_id: int, now: datetime) -> str:
    return f"copilot:reset_count:{user_id}:{daily_window_id(now)}"


def warning_flag_key(user_id: int, window: Window, now: datetime) -> str:
    window_id = daily_window_id(now) if window == "daily" else weekly_window_id(now)
    return f"copilot:usage_warned:{user_id}:{window}:{window_id}"


# --- spend counters ---------------------------------------------------------------


def record_spend(user_id: int, microdollars: int, now: datetime) -> None:
    """Add to both windows (and the pace bucket) and set their expiry, in one MULTI/EXEC."""
    daily, weekly = daily_key(user_id, now), weekly_key(user_id, now)
    hourly = hourly_key(user_id, _hour_start(now))
    pipe = redis_client().pipeline(transaction=True)
    pipe.incrby(daily, microdollars)
    pipe.expire(daily, ttl_until(daily_reset_at(now), now))
    pipe.incrby(weekly, microdollars)
    pipe.expire(weekly, ttl_until(weekly_reset_at(now), now))
    pipe.incrby(hourly, microdollars)
    pipe.expire(hourly, HOURLY_BUCKET_TTL_S)
    pipe.execute()


def _as_int(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bytes | str | int):
        return int(value)
    raise TypeError(f"unexpected counter value {value!r}")


def read_spend(user_id: int, now: datetime) -> tuple[int, int]:
    """(daily, weekly) spend; a missing key is 0. Both GETs in one round trip."""
    daily, weekly = redis_client().mget(daily_key(user_id, now), weekly_key(user_id, now))
    return _as_int(daily), _as_int(weekly)


def read_spend_known(user_id: int, now: datetime) -> tuple[int, int, bool]:
    """(daily, weekly, known): `read_spend` and whether this Redis holds the user's windows
    of this week (False after it lost them: rebuild first). One round trip."""
    daily, weekly, known = redis_client().mget(
        daily_key(user_id, now), weekly_key(user_id, now), known_key(user_id, now)
    )
    return _as_int(daily), _as_int(weekly), known is not None


def spend_windows_rebuild(user_id: int, now: datetime, *, daily: int, weekly: int) -> bool:
    """Put the database's recorded spend back into windows this Redis lost (see the module
    doc); False (nothing changed) when they are known. Atomic, so a concurrent rebuild or a
    recorded turn is never lost."""
    keys = [daily_key(user_id, now), weekly_key(user_id, now), known_key(user_id, now)]
    args = [max(0, daily), max(0, weekly), ttl_until(daily_reset_at(now), now), ttl_until(weekly_reset_at(now), now)]
    return bool(_store(settings.REDIS_URL).rebuild(keys=keys, args=args))


def spend_windows_known(user_id: int, now: datetime) -> None:
    """Mark the user's windows as held here (after a reset, which is authoritative)."""
    redis_client().set(known_key(user_id, now), "1", ex=ttl_until(weekly_reset_at(now), now))


@dataclass(frozen=True)
class SpendSnapshot:
    daily: int
    weekly: int
    recent_microdollars: int
    """Spend in the pace buckets (this hour and the two before it)."""
    recent_since: datetime | None
    """Start of the oldest non-empty pace bucket; None when there was no recent spend."""
    known: bool = True
    """False when this Redis lost the user's windows of this week (rebuild, then read again)."""


def read_spend_snapshot(user_id: int, now: datetime) -> SpendSnapshot:
    """Both windows, whether they are known here, and the recent pace buckets, in one MGET."""
    current = _hour_start(now)
    hours = [current - timedelta(hours=n) for n in range(PACE_BUCKETS - 1, -1, -1)]  # oldest first
    values = redis_client().mget(
        daily_key(user_id, now),
        weekly_key(user_id, now),
        known_key(user_id, now),
        *(hourly_key(user_id, h) for h in hours),
    )
    buckets = [_as_int(v) for v in values[3:]]
    since = next((h for h, spent in zip(hours, buckets, strict=True) if spent > 0), None)
    return SpendSnapshot(
        daily=_as_int(values[0]),
        weekly=_as_int(values[1]),
        recent_microdollars=sum(buckets),
        recent_since=since,
        known=values[2] is not None,
    )


def delete_windows(user_id: int, now: datetime, *, include_weekly: bool) -> None:
    """Staff reset: the daily key (plus the weekly one) and their warning flags, in one DEL."""
    keys = [daily_key(user_id, now), warning_flag_key(user_id, "daily", now)]
    if include_weekly:
        keys += [weekly_key(user_id, now), warning_flag_key(user_id, "weekly", now)]
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(*keys)
    pipe.set(known_key(user_id, now), "1", ex=ttl_until(weekly_reset_at(now), now))
    pipe.execute()


# --- paid reset -------------------------------------------------------------------


def reset_count_get(user_id: int, now: datetime) -> int:
    return _as_int(redis_client().get(reset_count_key(user_id, now)))


def reset_count_incr(user_id: int, now: datetime) -> int:
    """INCR + EXPIRE to midnight in one MULTI/EXEC; returns the new count."""
    key = reset_count_key(user_id, now)
    pipe = redis_client().pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, ttl_until(daily_reset_at(now), now))
    count, _ = pipe.execute()
    return int(count)


def reset_lock_acquire(user_id: int) -> str | None:
    """SET NX EX 10; the token to release it with, or None when another reset holds it."""
    token = secrets.token_hex(16)
    acquired = redis_client().set(reset_lock_key(user_id), token, nx=True, ex=RESET_LOCK_TTL_S)
    return token if acquired else None


def reset_lock_release(user_id: int, token: str) -> None:
    _store(settings.REDIS_URL).release_lock(keys=[reset_lock_key(user_id)], args=[token])


def reset_daily_window(user_id: int, daily_limit: int, now: datetime) -> int:
    """DEL the daily counter, DECRBY the weekly one by ``daily_limit`` (never below 0,
    TTL kept), atomically. Returns the new weekly spend."""
    keys = [daily_key(user_id, now), weekly_key(user_id, now), warning_flag_key(user_id, "daily", now)]
    args = [daily_limit, ttl_until(weekly_reset_at(now), now)]
    weekly = _as_int(_store(settings.REDIS_URL).reset_daily(keys=keys, args=args))
    spend_windows_known(user_id, now)  # a rebuild must not undo the reset
    return weekly


# --- usage warning ----------------------------------------------------------------


def warning_flag_set(user_id: int, window: Window, now: datetime) -> bool:
    """True only for the first caller in this window (SET NX, expiring with the window)."""
    key = warning_flag_key(user_id, window, now)
    return bool(redis_client().set(key, "1", nx=True, ex=ttl_until(reset_at(window, now), now)))
