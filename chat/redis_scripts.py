"""Chat's Redis access: the connection, every key name, every Lua script and every
MULTI/EXEC block of the app. Everything else calls these functions.

Key map (SPEC §3):
- turn meta        copilot:turn:meta:{session_id}        hash status/turn_id/user_id/created_at/origin_*
- turn stream      copilot:turn:stream:{turn_id}         Redis Stream, field `data` = chunk JSON
- cluster lock     copilot:session:{session_id}:lock     owner token `{hostname}:{task_id}`
- stream lock      copilot:stream_lock:{session_id}      turn_id
- worker liveness  copilot:turn:alive:{session_id}       turn_id, short TTL refreshed by the worker
- cancel flag      copilot:cancel:{session_id}           turn_id (+ pub/sub copilot:cancel:notify:{session_id})
- pending buffer   copilot:pending:{session_id}          list of JSON (+ pub/sub copilot:pending:notify:{session_id})
- queue-call rate  copilot:pending:calls:{user_id}       counter
- listener kick    copilot:turn:disconnect:{session_id}  pub/sub
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

logger = logging.getLogger(__name__)

TURN_TTL_S = 3600
PENDING_MAX = 10
PENDING_TTL_S = 3600
CANCEL_TTL_S = 300
ALIVE_TTL_S = 15


@functools.cache
def _pool(url: str) -> redis.ConnectionPool:
    return redis.ConnectionPool.from_url(url, socket_connect_timeout=2, socket_timeout=15, health_check_interval=30)


def redis_client() -> redis.Redis[bytes]:
    return redis.Redis(connection_pool=_pool(settings.REDIS_URL))


def async_redis_client() -> aioredis.Redis[bytes]:
    """A fresh asyncio client; the caller owns it (``await client.aclose()``)."""
    client: aioredis.Redis[bytes] = aioredis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=2, health_check_interval=30
    )
    return client


_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis[bytes]] = weakref.WeakKeyDictionary()


def loop_redis() -> aioredis.Redis[bytes]:
    """The running event loop's shared asyncio client (do not close it).

    An asyncio connection pool belongs to the loop that created it, so there is one
    client per loop: the worker's shared turn loop, daphne's loop. Connections are
    reused across turns and listeners instead of being opened for each.
    """
    loop = asyncio.get_running_loop()
    client = _loop_clients.get(loop)
    if client is None:
        client = async_redis_client()
        _loop_clients[loop] = client
    return client


# --- key names ------------------------------------------------------------------


def turn_meta_key(session_id: object) -> str:
    return f"copilot:turn:meta:{session_id}"


def turn_stream_key(turn_id: object) -> str:
    return f"copilot:turn:stream:{turn_id}"


def cluster_lock_key(session_id: object) -> str:
    return f"copilot:session:{session_id}:lock"


def stream_lock_key(session_id: object) -> str:
    return f"copilot:stream_lock:{session_id}"


def alive_key(session_id: object) -> str:
    return f"copilot:turn:alive:{session_id}"


def cancel_key(session_id: object) -> str:
    return f"copilot:cancel:{session_id}"


def cancel_channel(session_id: object) -> str:
    return f"copilot:cancel:notify:{session_id}"


def pending_key(session_id: object) -> str:
    return f"copilot:pending:{session_id}"


def pending_channel(session_id: object) -> str:
    return f"copilot:pending:notify:{session_id}"


def pending_calls_key(user_id: object) -> str:
    return f"copilot:pending:calls:{user_id}"


def disconnect_channel(session_id: object) -> str:
    return f"copilot:turn:disconnect:{session_id}"


# --- Lua scripts -------------------------------------------------------------------

# Write `mapping` into the hash unless `field` currently equals `forbidden`; the
# atomic "start a turn unless one is running" (SPEC §4.6.1). ARGV: field,
# forbidden, ttl, then field/value pairs.
_HASH_SET_IF_NOT_EQUAL = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

_HASH_COMPARE_AND_SET = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_COMPARE_AND_EXPIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
return 0
"""


def _script(source: str) -> Any:
    return redis_client().register_script(source)


def hash_set_if_not_equal(key: str, field: str, forbidden: str, mapping: Mapping[str, str], ttl: int) -> bool:
    flat: list[str] = []
    for name, value in mapping.items():
        flat.extend((name, value))
    return bool(_script(_HASH_SET_IF_NOT_EQUAL)(keys=[key], args=[field, forbidden, ttl, *flat]))


def hash_compare_and_set(key: str, field: str, expected: str, new: str) -> bool:
    return bool(_script(_HASH_COMPARE_AND_SET)(keys=[key], args=[field, expected, new]))


def compare_and_delete(key: str, token: str) -> bool:
    return bool(_script(_COMPARE_AND_DELETE)(keys=[key], args=[token]))


def compare_and_expire(key: str, token: str, ttl: int) -> bool:
    return bool(_script(_COMPARE_AND_EXPIRE)(keys=[key], args=[token, ttl]))


async def async_compare_and_delete(client: aioredis.Redis[bytes], key: str, token: str) -> bool:
    return bool(await client.eval(_COMPARE_AND_DELETE, 1, key, token))  # type: ignore[no-untyped-call]


async def async_compare_and_expire(client: aioredis.Redis[bytes], key: str, token: str, ttl: int) -> bool:
    return bool(await client.eval(_COMPARE_AND_EXPIRE, 1, key, token, ttl))  # type: ignore[no-untyped-call]


# --- MULTI/EXEC helpers ---------------------------------------------------------------


def incr_with_ttl(key: str, ttl: int) -> int:
    """INCR, and EXPIRE only when the key had no TTL (the window starts at the first call)."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, ttl, nx=True)
    count, _ = pipe.execute()
    return int(count)


def capped_rpush(key: str, value: str, max_len: int, ttl: int) -> int:
    """RPUSH, keep the newest `max_len`, refresh the TTL; returns the new length."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.rpush(key, value)
    pipe.ltrim(key, -max_len, -1)
    pipe.expire(key, ttl)
    pipe.llen(key)
    *_, length = pipe.execute()
    return int(length)


def lpop_many(key: str, count: int) -> list[bytes]:
    return list(redis_client().lpop(key, count) or [])


def lrange_all(key: str) -> list[bytes]:
    return list(redis_client().lrange(key, 0, -1))


def turn_statuses(session_ids: Iterable[object]) -> dict[str, bool]:
    """`turn_in_flight` for many sessions in one pipeline; every one False on a Redis error."""
    ids = [str(s) for s in session_ids]
    if not ids:
        return {}
    try:
        pipe = redis_client().pipeline(transaction=False)
        for session_id in ids:
            pipe.hget(turn_meta_key(session_id), "status")
        statuses = pipe.execute()
    except redis.RedisError:
        logger.warning("Redis unavailable reading turn statuses; reporting no turn in flight")
        return dict.fromkeys(ids, False)
    return {sid: status == b"running" for sid, status in zip(ids, statuses, strict=True)}
