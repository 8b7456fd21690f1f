"""Per-user abuse caps: running turns, turns in flight (running + queued), sends per
minute and chat sessions created per minute.

Each setting holds the FREE value; a tier multiplies it like the daily and weekly
spend limits do (``TIER_MULTIPLIERS``: FREE ×1, PRO ×5, BUSINESS ×20, ENTERPRISE
×60; a past-due account gets FREE's). A setting of 0 means no cap. A refusal is
HTTP 429 ``{detail, code}`` with ``Retry-After``.

All counters live in Redis and every check fails open: when Redis is down the
request goes through and the failure is logged.

Keys (all with a TTL):
    copilot:user_caps:running:{uid}               sorted set of "{session_id}:{turn_id}", score = claim time
    copilot:user_caps:sends:{uid}:{minute}        sends in one clock minute
    copilot:user_caps:sessions:{uid}:{minute}     chat sessions created in one clock minute

A running turn holds a slot from its claim until it ends (``turn_slot_release``,
called where a turn completes). A slot whose turn never released it (a process
died between the claim and the completion) drops out after ``SLOT_STALE_S``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.conf import settings

from copilot_site.accounts.models import User

from .errors import TooManyRunningTurns, TooManySends, TooManySessions, TooManyTurnsInFlight
from .redis_store import redis_client
from .selectors import TIER_MULTIPLIERS, limits_resolve

logger = logging.getLogger(__name__)

# How long a refused turn is told to wait: turns end on their own, there is no window.
TURN_CAP_RETRY_AFTER_S = 5
# A slot older than the turn log's TTL belongs to a turn that can no longer be running.
SLOT_STALE_S = 3600
MINUTE_S = 60

# KEYS: the running set. ARGV: now, stale before, member, max running, max in flight,
# queued count, key TTL. Returns 0 (slot taken), 1 (running cap) or 2 (in-flight cap).
# One script, so concurrent sends of one user can never take more slots than the cap.
_SLOT_RESERVE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local running = redis.call('ZCARD', KEYS[1])
local max_running = tonumber(ARGV[4])
local max_in_flight = tonumber(ARGV[5])
if max_running > 0 and running >= max_running then return 1 end
if max_in_flight > 0 and running + tonumber(ARGV[6]) >= max_in_flight then return 2 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 0
"""

# KEYS: a window counter. ARGV: TTL. INCR, with the TTL set on the window's first hit.
_WINDOW_HIT_LUA = """
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


# --- keys ---------------------------------------------------------------------------


def running_key(user_id: object) -> str:
    return f"copilot:user_caps:running:{user_id}"


def slot_member(session_id: object, turn_id: str) -> str:
    return f"{session_id}:{turn_id}"


def _window_key(kind: str, user_id: object, minute: int) -> str:
    return f"copilot:user_caps:{kind}:{user_id}:{minute}"


# --- caps ---------------------------------------------------------------------------


def _multiplier(user: User) -> int:
    try:
        tier = limits_resolve(user=user).limits_tier
    except Exception:  # noqa: BLE001 - an unreadable tier gets FREE's caps
        logger.warning("Tier lookup for the user caps of user %s failed; using FREE's", user.pk, exc_info=True)
        return 1
    return TIER_MULTIPLIERS.get(tier, 1)


def _base(setting: str) -> int:
    value = getattr(settings, setting, 0)
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        logger.warning("Invalid %s=%r; no cap", setting, value)
        return 0


def user_cap(user: User, setting: str) -> int:
    """The user's cap for one setting: the base value × the tier multiplier (0 = none)."""
    base = _base(setting)
    return base * _multiplier(user) if base else 0


# --- running and in-flight turns ------------------------------------------------------


def running_sessions(*, user_id: object) -> list[str]:
    """Session ids of the user's running turns (for counting their queued follow-ups)."""
    try:
        members = redis_client().zrangebyscore(running_key(user_id), time.time() - SLOT_STALE_S, "+inf")
    except redis.RedisError:
        logger.warning("User caps: Redis unavailable reading running turns of user %s", user_id, exc_info=True)
        return []
    return [m.decode().split(":", 1)[0] for m in members]


def _running_refusal(cap: int) -> TooManyRunningTurns:
    return TooManyRunningTurns(
        f"You already have {cap} replies running, the most your plan allows at once. "
        "Wait for one to finish, then send again.",
        retry_after=TURN_CAP_RETRY_AFTER_S,
    )


def _in_flight_refusal(cap: int) -> TooManyTurnsInFlight:
    return TooManyTurnsInFlight(
        f"You already have {cap} messages running or queued, the most your plan allows. "
        "Wait for some to finish, then send again.",
        retry_after=TURN_CAP_RETRY_AFTER_S,
    )


def turn_slot_reserve(*, user: User, session_id: object, turn_id: str, queued: int) -> None:
    """Take a running-turn slot for `turn_id` before it is claimed, or raise 429.

    `queued` is the number of the user's follow-ups waiting in buffers: running +
    queued must stay under the in-flight cap too.
    """
    max_running = user_cap(user, "COPILOT_USER_MAX_RUNNING_TURNS")
    max_in_flight = user_cap(user, "COPILOT_USER_MAX_IN_FLIGHT_TURNS")
    if not max_running and not max_in_flight:
        return
    now = time.time()
    client = redis_client()
    try:
        outcome = int(
            client.register_script(_SLOT_RESERVE_LUA)(
                keys=[running_key(user.pk)],
                args=[
                    now,
                    now - SLOT_STALE_S,
                    slot_member(session_id, turn_id),
                    max_running,
                    max_in_flight,
                    queued,
                    SLOT_STALE_S,
                ],
            )
        )
    except redis.RedisError:
        logger.warning("User caps: Redis unavailable; turn %s of user %s not capped", turn_id, user.pk, exc_info=True)
        return
    if outcome == 1:
        raise _running_refusal(max_running)
    if outcome == 2:
        raise _in_flight_refusal(max_in_flight)


def turn_queue_check(*, user: User, queued: int) -> None:
    """Before a follow-up is queued: running + queued + this one must fit the in-flight cap."""
    max_in_flight = user_cap(user, "COPILOT_USER_MAX_IN_FLIGHT_TURNS")
    if not max_in_flight:
        return
    try:
        key = running_key(user.pk)
        pipe = redis_client().pipeline(transaction=True)
        pipe.zremrangebyscore(key, "-inf", time.time() - SLOT_STALE_S)
        pipe.zcard(key)
        _, running = pipe.execute()
    except redis.RedisError:
        logger.warning("User caps: Redis unavailable; queued message of user %s not capped", user.pk, exc_info=True)
        return
    if int(running) + queued >= max_in_flight:
        raise _in_flight_refusal(max_in_flight)


def turn_slot_hold(*, user_id: object, session_id: object, turn_id: str) -> None:
    """Record a turn that starts without a check (auto-continue of already-queued
    follow-ups, which the in-flight cap counted when they were queued). Never raises."""
    try:
        key = running_key(user_id)
        pipe = redis_client().pipeline(transaction=True)
        pipe.zadd(key, {slot_member(session_id, turn_id): time.time()})
        pipe.expire(key, SLOT_STALE_S)
        pipe.execute()
    except redis.RedisError:
        logger.warning("User caps: could not record the slot of turn %s", turn_id, exc_info=True)


def turn_slot_release(*, user_id: object, session_id: object, turn_id: str) -> None:
    """Free the slot of a turn that ended (or never started). Never raises."""
    try:
        redis_client().zrem(running_key(user_id), slot_member(session_id, turn_id))
    except redis.RedisError:
        logger.warning("User caps: could not free the slot of turn %s (expires on its own)", turn_id, exc_info=True)


async def turn_slot_release_async(client: Any, *, user_id: object, session_id: object, turn_id: str) -> None:
    """`turn_slot_release` on an event loop, with the caller's asyncio Redis client."""
    try:
        await client.zrem(running_key(user_id), slot_member(session_id, turn_id))
    except redis.RedisError:
        logger.warning("User caps: could not free the slot of turn %s (expires on its own)", turn_id, exc_info=True)


# --- per-minute windows -----------------------------------------------------------------


def _window_hit(user: User, kind: str, setting: str) -> tuple[int, int] | None:
    """Count one hit in this clock minute; (cap, seconds left) when it is over the cap."""
    cap = user_cap(user, setting)
    if not cap:
        return None
    now = time.time()
    minute = int(now // MINUTE_S)
    try:
        count = int(
            redis_client().register_script(_WINDOW_HIT_LUA)(
                keys=[_window_key(kind, user.pk, minute)], args=[MINUTE_S * 2]
            )
        )
    except redis.RedisError:
        logger.warning("User caps: Redis unavailable; %s of user %s not capped", kind, user.pk, exc_info=True)
        return None
    if count <= cap:
        return None
    return cap, max(int((minute + 1) * MINUTE_S - now) + 1, 1)


def user_send_check(*, user: User) -> None:
    """Count a message send; 429 past COPILOT_USER_SENDS_PER_MINUTE (× tier) this minute."""
    over = _window_hit(user, "sends", "COPILOT_USER_SENDS_PER_MINUTE")
    if over is not None:
        cap, wait = over
        raise TooManySends(
            f"Too many messages: your plan allows {cap} a minute. Try again in {wait} s.",
            retry_after=wait,
        )


def user_session_create_check(*, user: User) -> None:
    """Count a chat creation; 429 past COPILOT_USER_SESSIONS_PER_MINUTE (× tier) this minute."""
    over = _window_hit(user, "sessions", "COPILOT_USER_SESSIONS_PER_MINUTE")
    if over is not None:
        cap, wait = over
        raise TooManySessions(
            f"Too many new chats: your plan allows {cap} a minute. Try again in {wait} s.",
            retry_after=wait,
        )
