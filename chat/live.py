"""Live fan-out of turn chunks inside one web process (one pub/sub connection per loop).

Every chunk the worker appends to a turn's Redis Stream is also published on the
turn's live channel as ``"{entry_id} {chunk JSON}"`` (one Lua step,
`redis_scripts.stream_append`). A web process follows any number of turns over a
single pub/sub connection: the hub subscribes to a turn's channel while at least
one local listener follows it and hands each message to those listeners' queues.

The stream stays the source of truth. A listener subscribes first, waits for
Redis to confirm the subscription, and only then reads the log up to now, so no
chunk can fall between the two; entry ids that it has already seen are skipped.
Pub/sub is at-most-once, so whenever delivery may have had a gap (the connection
was lost and re-subscribed, or a slow listener's queue overflowed) the listener
gets a `RESYNC` item and reads the log again from its last id.

The same connection carries each session's disconnect channel
(`copilot:turn:disconnect:{session_id}`): a message there (`DELETE …/stream`)
hands every listener of that session a `DISCONNECT` item, and it stops.

Why not an ``XREAD BLOCK`` per listener: each chunk would then cost every
listener a Redis round trip (~150-250 µs of Python per call); with the hub a
chunk costs one message parse per process, and several chunks often arrive in
one read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis

from . import redis_scripts as rs
from .redis_scripts import per_loop

logger = logging.getLogger(__name__)

RESYNC = object()
DISCONNECT = object()  # `DELETE …/stream` asked every listener of the session to close
QUEUE_MAX = 2000  # live items held for one slow listener before it falls back to the log
RECONNECT_DELAY_S = 0.5
_DISCONNECT_PREFIX = rs.DISCONNECT_CHANNEL_PREFIX.encode()


class Subscription:
    """One listener's queue of live items: ``(entry_id, chunk_json)`` tuples, RESYNC or DISCONNECT.

    It listens on one or more channels (a turn's live channel, the session's
    disconnect channel) and is `ready` once Redis has confirmed all of them.
    """

    __slots__ = ("items", "ready", "unconfirmed", "waiter")

    def __init__(self, channels: list[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.items: collections.deque[Any] = collections.deque()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.unconfirmed = set(channels)
        self.waiter: asyncio.Future[None] | None = None

    def push(self, item: Any) -> None:
        if item is DISCONNECT:
            self.items.clear()  # nothing more goes to a listener that was told to close
        elif len(self.items) >= QUEUE_MAX:
            # The listener is far behind: drop what is queued and let it re-read the log.
            self.items.clear()
            item = RESYNC
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def confirm(self, channel: bytes) -> None:
        if channel in self.unconfirmed:
            self.unconfirmed.discard(channel)
            if not self.unconfirmed and not self.ready.done():
                self.ready.set_result(None)
        elif not channel.startswith(_DISCONNECT_PREFIX):
            self.push(RESYNC)  # re-subscribed after a reconnect: chunks may have been missed

    async def get(self, wait_s: float) -> Any:
        """The next item, or None after `wait_s` seconds without one."""
        if not self.items:
            loop = asyncio.get_running_loop()
            self.waiter = loop.create_future()
            timer = loop.call_later(wait_s, _expire, self.waiter)
            try:
                await self.waiter
            finally:
                timer.cancel()
                self.waiter = None
            if not self.items:
                return None
        return self.items.popleft()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LiveHub:
    """The pub/sub connection of one event loop and the subscriptions on it."""

    def __init__(self) -> None:
        self.subs: dict[bytes, set[Subscription]] = {}
        self.confirming: collections.Counter[bytes] = collections.Counter()
        self.confirmed: set[bytes] = set()
        self.pubsub: Any = None
        self.connecting = asyncio.Lock()
        self.reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(self, turn_id: str, *, session_id: object = None) -> AsyncIterator[Subscription]:
        """A confirmed subscription to the turn's live channel (and, given `session_id`, to
        the session's disconnect channel), for the `async with` body."""
        channels = [rs.turn_live_channel(turn_id).encode()]
        if session_id is not None:
            channels.append(rs.listeners_disconnect_channel(session_id).encode())
        sub = Subscription(channels, asyncio.get_running_loop())
        try:
            for channel in channels:
                await self._add(channel, sub)
            await asyncio.wait_for(asyncio.shield(sub.ready), timeout=5)
            yield sub
        finally:
            for channel in channels:
                await self._remove(channel, sub)

    async def _add(self, channel: bytes, sub: Subscription) -> None:
        listeners = self.subs.setdefault(channel, set())
        listeners.add(sub)
        if channel in self.confirmed:
            sub.confirm(channel)
        elif len(listeners) == 1 or not self.confirming[channel]:
            await self._send_subscribe(channel)

    async def _remove(self, channel: bytes, sub: Subscription) -> None:
        listeners = self.subs.get(channel)
        if listeners is None or sub not in listeners:
            return
        listeners.discard(sub)
        if not listeners:
            del self.subs[channel]
            self.confirmed.discard(channel)
            await self._send_unsubscribe(channel)

    async def _connected(self) -> Any:
        """The hub's pub/sub, connected once. redis-py's `PubSub.connect` records its pool
        connection only after awaiting it: two first subscribers at once would each get a
        connection, and one subscription would land on a connection that nobody reads."""
        async with self.connecting:
            if self.pubsub is None:
                pubsub: Any = rs.loop_redis().pubsub()
                await pubsub.connect()  # missing from the redis stubs, present in redis-py 5
                self.pubsub = pubsub
        return self.pubsub

    async def _send_subscribe(self, channel: bytes) -> None:
        self.confirming[channel] += 1
        try:
            pubsub = await self._connected()
            await pubsub.subscribe(channel)
        except (redis.RedisError, OSError):
            self.confirming[channel] -= 1
            raise
        if self.reader is None or self.reader.done():
            self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _send_unsubscribe(self, channel: bytes) -> None:
        if self.pubsub is None:
            return
        try:
            await self.pubsub.unsubscribe(channel)
        except (redis.RedisError, OSError):
            logger.debug("Unsubscribe from %s failed; the reconnect drops it", channel, exc_info=True)

    async def _read(self) -> None:
        while self.subs or self.confirming:
            try:
                # A timeout now and then lets redis-py's health check PING a silent connection.
                response = await self.pubsub.parse_response(block=False, timeout=15)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure: reconnect and resubscribe
                logger.warning("Live pub/sub connection lost; re-subscribing", exc_info=True)
                await self._reconnect()
                continue
            if response is None or not isinstance(response, list) or len(response) < 3:
                continue
            kind = response[0]
            if kind == b"message":
                channel = response[1]
                listeners = self.subs.get(channel)
                if listeners:
                    if channel.startswith(_DISCONNECT_PREFIX):
                        item: Any = DISCONNECT
                    else:
                        entry_id, _, data = response[2].partition(b" ")
                        item = (entry_id.decode(), data)
                    for sub in listeners:
                        sub.push(item)
            elif kind == b"subscribe":
                self._confirmed(response[1])
        await self._close()

    def _confirmed(self, channel: bytes) -> None:
        if self.confirming[channel] > 0:
            self.confirming[channel] -= 1
        if self.confirming[channel] > 0:
            return  # a later SUBSCRIBE of this channel is still on its way
        del self.confirming[channel]
        listeners = self.subs.get(channel)
        if not listeners:
            return
        self.confirmed.add(channel)
        for sub in listeners:
            sub.confirm(channel)

    async def _reconnect(self) -> None:
        old, self.pubsub = self.pubsub, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.aclose()
        self.confirmed.clear()
        self.confirming.clear()
        while self.subs:
            await asyncio.sleep(RECONNECT_DELAY_S)
            channels = list(self.subs)
            try:
                pubsub = await self._connected()
                self.confirming.update(channels)
                await pubsub.subscribe(*channels)
                return
            except (redis.RedisError, OSError):
                self.pubsub = None
                self.confirming.clear()
                logger.warning("Live pub/sub reconnect failed; retrying", exc_info=True)
                for channel, listeners in self.subs.items():
                    if not channel.startswith(_DISCONNECT_PREFIX):
                        for sub in listeners:
                            sub.push(RESYNC)  # meanwhile listeners read the log

    async def _close(self) -> None:
        pubsub, self.pubsub = self.pubsub, None
        self.reader = None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


live_hub = per_loop(LiveHub)
