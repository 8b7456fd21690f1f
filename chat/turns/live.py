"""Live fan-out of turn chunks inside one web process (one pub/sub connection per loop).

Every chunk the worker appends to a turn's Redis Stream is also published on the
turn's live channel as ``"{entry_id} {chunk JSON}"`` (one Lua step,
`scripts.STREAM_APPEND`). A web process follows any number of turns over a
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
one read. The hub reads its connection in the transport's callback (`_Link`),
not through redis-py's reader task: a message reaches its listeners' queues in
the loop pass that read it. A link quiet for two KEEPALIVE_S periods (no reply
even to a PING) is taken for dead and replaced.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import redis

from . import scripts as rs
from .scripts import per_loop

logger = logging.getLogger(__name__)

RESYNC = object()
DISCONNECT = object()  # `DELETE …/stream` asked every listener of the session to close
QUEUE_MAX = 2000  # live items held for one slow listener before it falls back to the log
RECONNECT_DELAY_S = 0.5
KEEPALIVE_S = 15.0  # PING a quiet pub/sub connection this often; two silent periods mean it is dead
_DISCONNECT_PREFIX = rs.DISCONNECT_CHANNEL_PREFIX.encode()


def _log_failed_subscribe(send: asyncio.Future[None]) -> None:
    """Retrieve a failed SUBSCRIBE's error (asyncio would otherwise report it as never
    retrieved when its listener was cancelled meanwhile) and log it once."""
    if not send.cancelled() and (exc := send.exception()) is not None:
        logger.warning("Live hub could not subscribe: %r", exc)


class Subscription:
    """One listener's queue of live items: ``(entry_id, chunk_json)`` tuples, RESYNC or DISCONNECT.

    It listens on one or more channels (a turn's live channel, the session's
    disconnect channel) and is `ready` once Redis has confirmed all of them.
    """

    __slots__ = ("deadline", "items", "loop", "ready", "timer", "unconfirmed", "waiter")

    def __init__(self, channels: list[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.items: collections.deque[Any] = collections.deque()
        self.loop = loop
        self.ready: asyncio.Future[None] = loop.create_future()
        self.unconfirmed = set(channels)
        self.waiter: asyncio.Future[None] | None = None
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

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
        """The next item, or None after `wait_s` seconds without one.

        One timer per subscription, moved lazily: a wait only sets its deadline, and
        the timer, when it fires early, re-arms itself for the latest deadline. A
        timer made and cancelled per wait would be thousands of timers a second under
        load, and cancelled ones stay in the loop's heap until they come due.
        """
        if not self.items:
            loop = self.loop
            self.deadline = loop.time() + wait_s
            self.waiter = loop.create_future()
            if self.timer is None:
                self.timer = loop.call_at(self.deadline, self._tick)
            try:
                await self.waiter
            finally:
                self.waiter = None
            if not self.items:
                return None
        return self.items.popleft()

    def _tick(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # nobody waits; the next wait arms a timer again
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._tick)
        else:
            waiter.set_result(None)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Link(asyncio.Protocol):
    """The hub's pub/sub connection, read in the transport's own callback.

    redis-py opens and authenticates the connection (URL, TLS, AUTH, timeouts as
    for every other client); the hub then takes its transport over. Each read is
    parsed (hiredis) and handed to the listeners at once, in the same loop pass:
    redis-py's reader would wake a reader task first, one more loop pass and a
    timeout scope for every message.
    """

    def __init__(self, hub: LiveHub, connection: Any) -> None:
        # The stream writer stays referenced: when collected, it closes its transport.
        self.writer = connection._writer
        connection._writer = connection._reader = None  # redis-py lets go of it
        self.hub = hub
        self.transport: asyncio.Transport = self.writer.transport
        self.parser = hiredis.Reader()
        self.heard = True  # something arrived since the last keepalive PING

    def write(self, *args: bytes) -> None:
        self.transport.write(rs.resp_command(*args))

    def data_received(self, data: bytes) -> None:
        self.heard = True
        parser = self.parser
        parser.feed(data)
        try:
            while (reply := parser.gets()) is not False:
                self.hub._reply(reply)
        except hiredis.ProtocolError:
            logger.warning("Unreadable reply on the live pub/sub connection; reconnecting", exc_info=True)
            self.transport.close()

    def eof_received(self) -> bool:
        return False  # close; `connection_lost` follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub._lost(self)


class LiveHub:
    """The pub/sub connection of one event loop and the subscriptions on it."""

    def __init__(self) -> None:
        self.subs: dict[bytes, set[Subscription]] = {}
        self.confirming: collections.Counter[bytes] = collections.Counter()
        self.confirmed: set[bytes] = set()
        self.link: _Link | None = None
        self.connecting = asyncio.Lock()
        self.keepalive: asyncio.TimerHandle | None = None
        self.reconnecting: asyncio.Task[None] | None = None

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
            sub.close()
            for channel in channels:
                self._remove(channel, sub)

    async def _add(self, channel: bytes, sub: Subscription) -> None:
        listeners = self.subs.setdefault(channel, set())
        listeners.add(sub)
        if channel in self.confirmed:
            sub.confirm(channel)
        elif len(listeners) == 1 or not self.confirming[channel]:
            await self._send_subscribe(channel)

    def _remove(self, channel: bytes, sub: Subscription) -> None:
        listeners = self.subs.get(channel)
        if listeners is None or sub not in listeners:
            return
        listeners.discard(sub)
        if not listeners:
            del self.subs[channel]
            self.confirmed.discard(channel)
            if self.link is not None:
                self.link.write(b"UNSUBSCRIBE", channel)

    async def _connected(self) -> _Link:
        """The hub's link, connected once: two first subscribers at once must not each
        open a connection (one of them would then go unread)."""
        async with self.connecting:
            if self.link is None:
                connection: Any = rs.loop_redis().connection_pool.make_connection()
                await connection.connect()
                # redis-py reads through an asyncio StreamReader; after the handshake
                # nothing is left in it, and the transport's reads now come to the link.
                link = _Link(self, connection)
                link.transport.set_protocol(link)
                self.link = link
                self._arm_keepalive()
                # After a lost connection, every channel still listened to goes on the new
                # one (those a subscriber is sending itself are counted in `confirming`).
                stale = [channel for channel in self.subs if not self.confirming[channel]]
                if stale:
                    self.confirming.update(stale)
                    link.write(b"SUBSCRIBE", *stale)
            return self.link

    async def _send_subscribe(self, channel: bytes) -> None:
        """Send SUBSCRIBE for `channel` (connecting first if need be). Other listeners of the
        channel wait for its confirmation rather than send their own, so a listener cancelled
        meanwhile (a socket closing, a resume restarting its relay) must not take the
        SUBSCRIBE with it: the send runs shielded and completes regardless. If it fails
        after its listener has gone, the hub logs the failure (nobody else awaits it)."""
        self.confirming[channel] += 1
        send = asyncio.ensure_future(self._subscribe_on_link(channel))
        send.add_done_callback(_log_failed_subscribe)
        await asyncio.shield(send)

    async def _subscribe_on_link(self, channel: bytes) -> None:
        try:
            link = await self._connected()
        except (redis.RedisError, OSError):
            self.confirming[channel] -= 1
            raise
        link.write(b"SUBSCRIBE", channel)

    def _reply(self, reply: Any) -> None:
        if type(reply) is not list or len(reply) < 2:
            return  # a PING's reply outside subscribed mode, or an error (logged by no one: harmless)
        kind = reply[0]
        if kind == b"message":
            channel = reply[1]
            listeners = self.subs.get(channel)
            if listeners:
                if channel.startswith(_DISCONNECT_PREFIX):
                    item: Any = DISCONNECT
                else:
                    entry_id, _, data = reply[2].partition(b" ")
                    item = (entry_id.decode(), data)
                for sub in listeners:
                    sub.push(item)
        elif kind == b"subscribe":
            self._confirmed(reply[1])
        elif kind == b"unsubscribe" and not self.subs and not self.confirming:
            self._close()

    def _confirmed(self, channel: bytes) -> None:
        if self.confirming[channel] > 0:
            self.confirming[channel] -= 1
        if self.confirming[channel] > 0:
            return  # a later SUBSCRIBE of this channel is still on its way
        del self.confirming[channel]
        listeners = self.subs.get(channel)
        if not listeners:
            if self.link is not None:
                self.link.write(b"UNSUBSCRIBE", channel)  # its listeners left before Redis answered
            return
        self.confirmed.add(channel)
        for sub in listeners:
            sub.confirm(channel)

    def _arm_keepalive(self) -> None:
        self.keepalive = asyncio.get_running_loop().call_later(KEEPALIVE_S, self._keepalive)

    def _keepalive(self) -> None:
        """Every KEEPALIVE_S: a link that heard nothing since the last PING is dead (closed,
        and `_lost` reconnects); otherwise PING it, so a silent link is tested too."""
        link = self.link
        if link is None:
            return
        if not link.heard:
            logger.warning("Live pub/sub connection silent for %d s; reconnecting", 2 * KEEPALIVE_S)
            link.transport.close()
            return
        link.heard = False
        link.write(b"PING")
        self._arm_keepalive()

    def _lost(self, link: _Link) -> None:
        if link is not self.link:
            return  # closed on purpose
        logger.warning("Live pub/sub connection lost; re-subscribing")
        self.link = None
        self._cancel_keepalive()
        self.confirmed.clear()
        self.confirming.clear()
        if self.subs and (self.reconnecting is None or self.reconnecting.done()):
            self.reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while self.subs and self.link is None:
            await asyncio.sleep(RECONNECT_DELAY_S)
            try:
                await self._connected()  # re-subscribes every channel still listened to
            except (redis.RedisError, OSError):
                logger.warning("Live pub/sub reconnect failed; retrying", exc_info=True)
                for channel, listeners in self.subs.items():
                    if not channel.startswith(_DISCONNECT_PREFIX):
                        for sub in listeners:
                            sub.push(RESYNC)  # meanwhile listeners read the log

    def _cancel_keepalive(self) -> None:
        if self.keepalive is not None:
            self.keepalive.cancel()
            self.keepalive = None

    def _close(self) -> None:
        link, self.link = self.link, None
        self._cancel_keepalive()
        if link is not None:
            link.transport.close()


live_hub = per_loop(LiveHub)
