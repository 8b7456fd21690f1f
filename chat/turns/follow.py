"""Following a turn's log: replay from any position, then live chunks until `finish`.

Shared by the SSE relay and the WebSocket consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import redis.exceptions
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError

from chat.services.turns import reap_if_dead
from copilot_site.core import metrics
from copilot_site.core.sql import connection_released

from . import scripts as rs
from .live import DISCONNECT, RESYNC, live_hub
from .registry import turn_meta_get_async

logger = logging.getLogger(__name__)

# Every chunk type of the AI SDK UI message stream v1 that the contract allows (plus data-*).
WIRE_TYPES = frozenset(
    {
        "start", "start-step", "finish-step", "text-start", "text-delta", "text-end",
        "reasoning-start", "reasoning-delta", "reasoning-end", "tool-input-start",
        "tool-input-available", "tool-output-available", "error", "finish",
        # tools that ask first (AI SDK 6 chunks; only when approvals are switched on)
        "tool-approval-request", "tool-output-denied",
    }
)  # fmt: skip

_UNPARSED: Any = object()


class StreamItem:
    """One chunk of a turn's log (`event_id` None for synthesized ones) or a heartbeat
    (`chunk` None).

    `raw` is the chunk's JSON text as stored, so relays can forward it without
    encoding it again. An item made from `raw` and its type alone (`_decode_entry`'s
    fast path for deltas) parses `chunk` on first use; relays never ask for it.
    """

    __slots__ = ("_chunk", "event_id", "raw", "turn_id", "type")

    def __init__(
        self,
        event_id: str | None,
        turn_id: str,
        chunk: dict[str, Any] | None,
        raw: bytes | None = None,
        *,
        chunk_type: str | None = None,
    ) -> None:
        self.event_id = event_id
        self.turn_id = turn_id
        self.raw = raw
        self.type: str | None
        self._chunk: dict[str, Any] | None
        if chunk_type is not None and raw is not None:
            self._chunk, self.type = _UNPARSED, chunk_type
        else:
            self._chunk, self.type = chunk, (chunk.get("type") if chunk is not None else None)

    @property
    def chunk(self) -> dict[str, Any] | None:
        if self._chunk is _UNPARSED:
            self._chunk = json.loads(self.raw)  # type: ignore[arg-type]
        return self._chunk

    @property
    def is_heartbeat(self) -> bool:
        return self.type is None

    @property
    def is_terminal(self) -> bool:
        return self.type == "finish"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamItem):
            return NotImplemented
        return (self.event_id, self.turn_id, self.chunk) == (other.event_id, other.turn_id, other.chunk)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StreamItem(event_id={self.event_id!r}, turn_id={self.turn_id!r}, chunk={self.chunk!r})"


class ListenerDisconnected(Exception):  # noqa: N818 - an event, not a failure
    """`DELETE …/stream` closed this listener; the turn goes on."""


def turn_listeners_disconnect(session_id: object) -> int:
    """Close every SSE and WebSocket listener of the session's turn, in every web process
    (`DELETE …/stream`); the turn keeps running. Returns how many processes were listening."""
    return int(rs.redis_client().publish(rs.listeners_disconnect_channel(session_id), "1"))


_LOG_PAGE = 500


_ENTRY_PART_MAX = 2**64 - 1  # Redis refuses a stream id whose parts are past 64 bits


def _entry_key(entry_id: str) -> tuple[int, int] | None:
    """A stream entry id (``"<ms>-<seq>"`` or ``"<ms>"``) as a comparable pair; None if it is not one.
    Runs for every relayed chunk: string tests, no regular expression."""
    ms, dash, seq = entry_id.partition("-")
    if not (ms.isascii() and ms.isdigit()):
        return None
    if dash and not (seq.isascii() and seq.isdigit()):
        return None
    key = int(ms), int(seq) if dash else 0
    return key if max(key) <= _ENTRY_PART_MAX else None


class _Position:
    """The last entry a listener has seen, as Redis's id text and as a comparable key."""

    __slots__ = ("id", "key")

    def __init__(self, after: str | None) -> None:
        # Decision: an unparseable `after` (Last-Event-ID / resume) replays from the start,
        # so the client misses nothing; it never reaches Redis as a malformed id.
        key = _entry_key(after) if after else None
        self.id = after if key is not None and after else "0-0"
        self.key = key or (0, 0)

    def advance(self, entry_id: str) -> bool:
        """Move past `entry_id`; False (and no move) when it was already seen."""
        key = _entry_key(entry_id)
        if key is None or key <= self.key:
            return False
        self.id, self.key = entry_id, key
        return True


async def _log_after(client: Any, key: str, turn_id: str, position: _Position) -> list[StreamItem]:
    """Every decodable entry of the turn's log after `position` (which moves to the end)."""
    items: list[StreamItem] = []
    while True:
        response = await client.xread({key: position.id}, count=_LOG_PAGE)
        entries = response[0][1] if response else []
        for entry_id, fields in entries:
            entry = entry_id.decode()
            if not position.advance(entry):
                continue
            item = _decode_entry(entry, turn_id, fields.get(b"data"))
            if item is not None:
                items.append(item)
        if len(entries) < _LOG_PAGE:
            return items


# While Redis is unreachable a listener retries with these waits (a heartbeat before
# each), resuming from its last event id; unreachable for OUTAGE_GIVE_UP_S in all, it
# ends with `error` + `finish`, well inside the 10 s a client waits between heartbeats.
RECONNECT_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
OUTAGE_GIVE_UP_S = 7.0
STREAM_INTERRUPTED_TEXT = (
    "The live stream of this reply was interrupted (the message store is unavailable). "
    "Reload the chat to see the reply."
)
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError)


class _Health:
    """When the listener last read Redis successfully (monotonic seconds)."""

    __slots__ = ("ok_at",)

    def __init__(self) -> None:
        self.ok_at = time.monotonic()


async def follow_turn(
    session_id: object, *, after: str | None = None, turn_id: str | None = None
) -> AsyncGenerator[StreamItem, None]:
    """Replay a turn's events from its start (or after `after`), then follow it live.

    Live chunks come through this process's pub/sub hub (`chat.turns.live`); the log is
    read when following starts and again whenever live delivery may have had a gap.
    Ends after `finish`. Heartbeats come as items with `chunk=None` every
    COPILOT_SSE_HEARTBEAT_S of silence; on each one the status is re-read and the log
    checked, so a lost `finish` (or a dead worker) still ends the stream. Raises
    `ListenerDisconnected` when `turn_listeners_disconnect` is called for the session.

    A lost Redis connection (a restart, a fail-over) never escapes: the listener sends
    heartbeats while it reconnects with back-off and resumes after the last entry it
    relayed; when Redis stays unreachable for OUTAGE_GIVE_UP_S, or comes back without
    the turn, it ends with `error` + `finish`.
    """
    position = _Position(after)
    health = _Health()
    down_since: float | None = None
    failures = 0
    resumed = False
    while True:
        follow = _follow_once(session_id, position, health, turn_id=turn_id, resumed=resumed)
        try:
            async with contextlib.aclosing(follow) as items:
                async for item in items:
                    if item.turn_id:
                        turn_id = item.turn_id
                    yield item
            return
        except _REDIS_DOWN as exc:
            now = time.monotonic()
            if down_since is None or health.ok_at > down_since:
                down_since, failures = now, 0
                logger.warning("Redis unreachable while following session %s; reconnecting: %r", session_id, exc)
            if now - down_since >= OUTAGE_GIVE_UP_S:
                logger.warning("Redis unreachable too long; ending the stream of session %s", session_id)
                yield StreamItem(None, turn_id or "", {"type": "error", "errorText": STREAM_INTERRUPTED_TEXT})
                yield StreamItem(None, turn_id or "", {"type": "finish"})
                return
            yield StreamItem(None, turn_id or "", None)  # a heartbeat: the client knows the stream lives
            wait = RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)]
            failures += 1
            await asyncio.sleep(min(wait, max(0.0, down_since + OUTAGE_GIVE_UP_S - now)))
            resumed = True


async def _follow_once(
    session_id: object, position: _Position, health: _Health, *, turn_id: str | None, resumed: bool
) -> AsyncGenerator[StreamItem, None]:
    """One connection's worth of `follow_turn`; Redis errors propagate to it."""
    client = rs.loop_redis()
    meta = None
    for _ in range(4):  # the meta may land a moment after a duplicate POST subscribes
        meta = await turn_meta_get_async(client, session_id)
        if meta is not None:
            break
        await asyncio.sleep(0.1)
    health.ok_at = time.monotonic()
    if meta is None and resumed and turn_id is not None:
        # Redis came back without the turn (it keeps nothing across a restart).
        yield StreamItem(None, turn_id, {"type": "error", "errorText": STREAM_INTERRUPTED_TEXT})
        yield StreamItem(None, turn_id, {"type": "finish"})
        return
    if meta is None or (turn_id is not None and meta.turn_id != turn_id and not meta.is_running):
        yield StreamItem(None, turn_id or "", {"type": "finish"})
        return
    current_turn = turn_id or meta.turn_id
    key = rs.turn_stream_key(current_turn)
    heartbeat_s = float(settings.COPILOT_SSE_HEARTBEAT_S)
    async with live_hub().subscribe(current_turn, session_id=session_id) as live:
        # Subscribed (and confirmed by Redis) before the log is read: no chunk can
        # fall between the two, and ids already seen are skipped below.
        backlog = await _log_after(client, key, current_turn, position)
        health.ok_at = time.monotonic()
        while True:
            for item in backlog:
                yield item
                if item.is_terminal:
                    return
            backlog = []
            got = await live.get(heartbeat_s)
            if got is DISCONNECT:
                raise ListenerDisconnected(session_id)
            if got is RESYNC:
                backlog = await _log_after(client, key, current_turn, position)
                health.ok_at = time.monotonic()
                continue
            if got is None:
                yield StreamItem(None, current_turn, None)
                backlog = await _log_after(client, key, current_turn, position)
                health.ok_at = time.monotonic()
                if backlog:
                    continue
                meta = await turn_meta_get_async(client, session_id)
                if meta is None or meta.turn_id != current_turn or not meta.is_running:
                    backlog = await _log_after(client, key, current_turn, position)
                    if not backlog:
                        yield StreamItem(None, current_turn, {"type": "finish"})
                        return
                elif (meta.started_at is not None or time.time() - meta.created_at > 5) and not await client.exists(
                    rs.alive_key(session_id)
                ):
                    await _reap_quietly(session_id)
                continue
            entry_id, data = got
            if not position.advance(entry_id):
                continue
            live_item = _decode_entry(entry_id, current_turn, data)
            if live_item is None:
                continue
            metrics.chunk_relayed(entry_id)
            yield live_item
            if live_item.is_terminal:
                return


async def _reap_quietly(session_id: object) -> None:
    """End a dead worker's turn; while the database is unavailable, try on the next heartbeat."""
    try:
        await sync_to_async(connection_released(reap_if_dead))(session_id)
    except (OperationalError, InterfaceError):
        logger.warning("Could not reap the turn of session %s: the database is unavailable", session_id)


# Deltas are most of a turn's chunks, and the worker writes them compact and type first
# (`to_wire`, `_Publisher.publish`): relayed as written, their JSON is parsed only if asked.
_DELTA_PREFIXES = {b'{"type":"%s",' % t.encode(): t for t in ("text-delta", "reasoning-delta")}
_DELTA_PREFIX_LEN = {len(prefix) for prefix in _DELTA_PREFIXES}


def _decode_entry(entry_id: str, turn_id: str, data: bytes | None) -> StreamItem | None:
    if data is not None and data.endswith(b"}"):
        for length in _DELTA_PREFIX_LEN:
            chunk_type = _DELTA_PREFIXES.get(data[:length])
            if chunk_type is not None:
                return StreamItem(entry_id, turn_id, None, data, chunk_type=chunk_type)
    try:
        chunk = json.loads(data) if data is not None else None
    except ValueError:
        chunk = None
    if not isinstance(chunk, dict):
        logger.warning("Unreadable entry %s in turn %s", entry_id, turn_id)
        return None
    chunk_type = chunk.get("type")
    if not isinstance(chunk_type, str) or not (chunk_type in WIRE_TYPES or chunk_type.startswith("data-")):
        logger.warning("Unknown chunk type: %r", chunk_type)
        return None
    return StreamItem(entry_id, turn_id, chunk, data)
