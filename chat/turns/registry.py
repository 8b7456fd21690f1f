"""The turn registry: claiming a session, completion, cancel, the pending buffer,
and reading a turn's event log. Shared by the web process (API, SSE, WebSocket)
and the worker.

At most one turn runs per session: the claim is one Lua script on the turn-meta
hash (`status` must not already be `running`), so any number of web processes
racing on one session start exactly one turn.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from . import scripts as rs

logger = logging.getLogger(__name__)

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
WORKER_LOST_ERROR = (
    "The worker running this reply stopped unexpectedly. What it produced so far is saved; please try again."
)
NEVER_STARTED_ERROR = "No worker picked up this reply in time. Please try again."
CANCEL_WAIT_S = 5.0
# Every chunk type of the AI SDK UI message stream v1 that the contract allows (plus data-*).
WIRE_TYPES = frozenset(
    {
        "start", "start-step", "finish-step", "text-start", "text-delta", "text-end",
        "reasoning-start", "reasoning-delta", "reasoning-end", "tool-input-start",
        "tool-input-available", "tool-output-available", "error", "finish",
    }
)  # fmt: skip


# --- meta ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnMeta:
    status: str
    turn_id: str
    user_id: str
    created_at: float
    origin_id: str = ""
    origin_name: str = ""
    started_at: float | None = None

    @property
    def is_running(self) -> bool:
        return self.status == STATUS_RUNNING

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> TurnMeta | None:
        if not raw or b"turn_id" not in raw:
            return None
        text = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            status=text.get("status", ""),
            turn_id=text["turn_id"],
            user_id=text.get("user_id", ""),
            created_at=float(text.get("created_at") or 0),
            origin_id=text.get("origin_id", ""),
            origin_name=text.get("origin_name", ""),
            started_at=float(text["started_at"]) if text.get("started_at") else None,
        )


def turn_meta_get(session_id: object) -> TurnMeta | None:
    return TurnMeta.from_hash(rs.redis_client().hgetall(rs.turn_meta_key(session_id)))


async def turn_meta_get_async(client: Any, session_id: object) -> TurnMeta | None:
    return TurnMeta.from_hash(await client.hgetall(rs.turn_meta_key(session_id)))


def turn_claim(*, session_id: object, user_id: object, origin_id: str, origin_name: str) -> str | None:
    """Atomically mark the session as running a new turn; the new turn id, or None if one runs."""
    turn_id = str(uuid.uuid4())
    claimed = rs.hash_set_if_not_equal(
        rs.turn_meta_key(session_id),
        "status",
        STATUS_RUNNING,
        {
            "status": STATUS_RUNNING,
            "turn_id": turn_id,
            "user_id": str(user_id),
            "created_at": f"{time.time():.6f}",
            "origin_id": origin_id,
            "origin_name": origin_name,
        },
        rs.TURN_TTL_S,
    )
    return turn_id if claimed else None


# --- publishing ---------------------------------------------------------------------------


def publish_chunk(turn_id: object, chunk: dict[str, Any]) -> str:
    """Append one wire chunk to the turn's stream (and its live channel); returns its event id."""
    return rs.stream_append(turn_id, json.dumps(chunk, separators=(",", ":")))


def mark_session_completed(
    session_id: object, *, error_message: str | None = None, turn_id: str | None = None, record_duration: bool = True
) -> bool:
    """The one place a turn ends (SPEC §4.6.5): CAS the status, free the session, publish.

    One Redis step (`scripts.complete_turn`) keeps the order: status first
    (only the first finisher wins), then the cluster lock is deleted so the next
    turn can start at once, then `error` (if any) and `finish` go to the stream.
    Returns False, doing nothing else, when the turn had already ended (or
    `turn_id` is not the current turn). A turn ending without an error gets its
    wall time on its last assistant row first (`record_duration`; the worker's
    engine writes it with the row itself and passes False).
    """
    meta = turn_meta_get(session_id)
    if meta is None or not meta.is_running or (turn_id is not None and meta.turn_id != turn_id):
        return False
    if not error_message and record_duration:
        _record_duration(meta)
    status, chunks = _completion(error_message)
    if not rs.complete_turn(session_id, meta.turn_id, status, chunks):
        return False
    notify_user(meta.user_id, completion_notice(session_id, status))
    return True


async def mark_session_completed_async(
    client: Any, session_id: object, *, turn_id: str, user_id: object, error_message: str | None
) -> bool:
    """`mark_session_completed` for a caller on an event loop that knows the turn and has
    already recorded its duration (the worker): one Redis call, no thread hop."""
    status, chunks = _completion(error_message)
    if not await rs.async_complete_turn(client, session_id, turn_id, status, chunks):
        return False
    await notify_user_async(user_id, completion_notice(session_id, status))
    return True


def _completion(error_message: str | None) -> tuple[str, list[str]]:
    chunks = ['{"type":"finish"}']
    if error_message:
        chunks.insert(0, json.dumps({"type": "error", "errorText": error_message}, separators=(",", ":")))
    return (STATUS_FAILED if error_message else STATUS_COMPLETED), chunks


def turn_duration_ms(created_at: float) -> int:
    """A turn's wall time so far, from its claim (unix seconds), in whole ms (never negative)."""
    return max(0, int((time.time() - created_at) * 1000))


def _record_duration(meta: TurnMeta) -> None:
    """The turn's wall time on its last assistant row (best effort), before `finish` goes
    out, so the page's stream-end refetch can say "Thought for Ns"."""
    from django.db import DatabaseError

    from chat.models import ChatMessage

    duration_ms = turn_duration_ms(meta.created_at)
    try:
        last = (
            ChatMessage.objects.filter(turn_id=meta.turn_id, role=ChatMessage.Role.ASSISTANT)
            .order_by("-sequence")
            .values_list("pk", flat=True)
            .first()
        )
        if last is not None:
            ChatMessage.objects.filter(pk=last).update(duration_ms=duration_ms)
    except DatabaseError:
        logger.warning("Could not record the duration of turn %s", meta.turn_id, exc_info=True)


def notify_session(session_id: object, message: dict[str, Any]) -> None:
    """Tell every WebSocket watching the session (best effort)."""
    _notify_group(session_group(session_id), message)


def session_group(session_id: object) -> str:
    return f"chat_session_{session_id}"


def user_group(user_id: object) -> str:
    """Every WebSocket of the user, whatever session it shows (completion notices)."""
    return f"copilot_user_{user_id}"


def completion_notice(session_id: object, status: str) -> dict[str, Any]:
    """The frame a user's sockets get when one of their turns ends (SPEC §4.6.5.7)."""
    return {"type": "copilot_completion", "event": "session_completed", "session_id": str(session_id),
            "status": status}  # fmt: skip


def notify_user(user_id: object, message: dict[str, Any]) -> None:
    """Tell every WebSocket of the user (best effort)."""
    if user_id not in (None, ""):
        _notify_group(user_group(user_id), message)


async def notify_user_async(user_id: object, message: dict[str, Any]) -> None:
    if user_id not in (None, ""):
        await _notify_group_async(user_group(user_id), message)


def _notify_group(group: str, message: dict[str, Any]) -> None:
    from asgiref.sync import async_to_sync

    try:
        async_to_sync(_notify_group_async)(group, message)
    except RuntimeError:  # called on a thread running an event loop: a caller's mistake, not the turn's
        logger.warning("Could not notify group %s from an event loop thread", group, exc_info=True)


async def _notify_group_async(group: str, message: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except Exception:  # noqa: BLE001 - a notification must never fail a turn
        logger.warning("Could not notify group %s", group, exc_info=True)


def reap_if_dead(session_id: object) -> bool:
    """End a `running` turn whose worker is gone; True if it did.

    A worker refreshes `copilot:turn:alive:{sid}` every few seconds. When the key
    has expired after the worker started, the worker died (kill -9, OOM, host
    loss): the turn is failed so the session accepts new messages at once, and a
    late redelivery of the task finds the turn no longer running and drops it.
    A turn no worker picked up within COPILOT_TURN_START_TIMEOUT_S fails the same way.
    """
    meta = turn_meta_get(session_id)
    if meta is None or not meta.is_running:
        return False
    if rs.redis_client().exists(rs.alive_key(session_id)):
        return False
    if meta.started_at is not None:
        error = WORKER_LOST_ERROR
    elif time.time() - meta.created_at > settings.COPILOT_TURN_START_TIMEOUT_S:
        error = NEVER_STARTED_ERROR
    else:
        return False
    logger.warning("Turn %s of session %s has no live worker: %s", meta.turn_id, session_id, error)
    return turn_fail_orphaned(session_id=str(session_id), turn_id=meta.turn_id, error=error)


def turn_fail_orphaned(*, session_id: str, turn_id: str, error: str) -> bool:
    """End a turn whose worker is gone: a notice in the transcript, its stream lock
    freed (the dead worker can no longer release it), then completion as failed."""
    from .dispatch import turn_record_failure

    turn_record_failure(session_id=session_id, turn_id=turn_id, error=error)
    rs.compare_and_delete(rs.stream_lock_key(session_id), turn_id)
    return mark_session_completed(session_id, error_message=error, turn_id=turn_id)


# --- cancel --------------------------------------------------------------------------------


def turn_cancel_request(session_id: object) -> dict[str, Any]:
    """Ask the worker to stop; wait up to 5 s, then force the turn to end (SPEC §4.16)."""
    meta = turn_meta_get(session_id)
    if meta is None or not meta.is_running:
        return {"cancelled": True, "reason": "no_active_session"}
    client = rs.redis_client()
    client.set(rs.cancel_key(session_id), meta.turn_id, ex=rs.CANCEL_TTL_S)
    client.publish(rs.cancel_channel(session_id), meta.turn_id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while time.monotonic() < deadline:
        current = turn_meta_get(session_id)
        if current is None or current.turn_id != meta.turn_id or not current.is_running:
            return {"cancelled": True, "reason": None}
        time.sleep(0.1)
    mark_session_completed(session_id, error_message="Cancelled", turn_id=meta.turn_id)
    return {"cancelled": True, "reason": None}


def turn_stop_quietly(session_id: object) -> None:
    """Ask a running turn to stop without waiting for it (the session is going away)."""
    meta = turn_meta_get(session_id)
    if meta is not None and meta.is_running:
        rs.redis_client().set(rs.cancel_key(session_id), meta.turn_id, ex=rs.CANCEL_TTL_S)


def session_forget(*, session_id: str) -> None:
    """Drop a deleted session's queued follow-ups; its turn log expires on its own."""
    try:
        rs.redis_client().delete(rs.pending_key(session_id))
    except redis.RedisError:
        logger.warning("Could not clear the pending buffer of deleted session %s", session_id)


def cancel_requested(session_id: object, turn_id: str) -> bool:
    value = rs.redis_client().get(rs.cancel_key(session_id))
    return value is not None and value.decode() == turn_id


# --- pending follow-ups -----------------------------------------------------------------------


@dataclass(frozen=True)
class PendingMessage:
    content: str
    enqueued_at: float = field(default_factory=time.time)
    context: dict[str, str] | None = None
    client_message_id: str | None = None
    # "Send as the next turn": never injected at a tool-round boundary, only
    # picked up when the next turn starts.
    next_turn: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "content": self.content,
                "enqueued_at": self.enqueued_at,
                "context": self.context,
                "client_message_id": self.client_message_id,
                "next_turn": self.next_turn,
            }
        )

    @classmethod
    def from_raw(cls, raw: bytes | str) -> PendingMessage | None:
        try:
            data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
            content = data["content"]
            if not isinstance(content, str) or not content:
                raise ValueError("empty content")
            context = data.get("context")
            return cls(
                content=content,
                enqueued_at=float(data.get("enqueued_at") or 0),
                context=context if isinstance(context, dict) else None,
                client_message_id=data.get("client_message_id"),
                next_turn=bool(data.get("next_turn", False)),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            logger.warning("Pending buffer: dropping malformed entry %r", raw[:200])
            return None


def pending_push(session_id: object, message: PendingMessage) -> int:
    """Queue a follow-up (the 11th drops the oldest); returns the buffer length."""
    length = rs.capped_rpush(rs.pending_key(session_id), message.to_json(), rs.PENDING_MAX, rs.PENDING_TTL_S)
    try:
        rs.redis_client().publish(rs.pending_channel(session_id), "1")
    except redis.RedisError:
        logger.warning("Pending notify publish failed for %s", session_id)
    return length


def pending_drain(session_id: object) -> list[PendingMessage]:
    """Take every queued follow-up, oldest first, atomically (LPOP count)."""
    try:
        raw = rs.lpop_many(rs.pending_key(session_id), rs.PENDING_MAX)
    except redis.RedisError:
        logger.warning("Pending drain failed for %s; treating as empty", session_id)
        return []
    return [m for m in (PendingMessage.from_raw(r) for r in raw) if m is not None]


def pending_requeue(session_id: object, messages: list[PendingMessage]) -> None:
    """Put drained messages back at the head, in their original order."""
    if not messages:
        return
    try:
        rs.redis_client().lpush(rs.pending_key(session_id), *[m.to_json() for m in reversed(messages)])
    except redis.RedisError:
        logger.exception("Could not re-queue %d pending message(s) for %s", len(messages), session_id)


def pending_peek(session_id: object) -> list[PendingMessage]:
    return [m for m in (PendingMessage.from_raw(r) for r in rs.lrange_all(rs.pending_key(session_id))) if m is not None]


def pending_call_allowed(user_id: object) -> bool:
    """At most COPILOT_PENDING_CALL_LIMIT queued sends per user per window; fails open."""
    try:
        count = rs.incr_with_ttl(rs.pending_calls_key(user_id), settings.COPILOT_PENDING_CALL_WINDOW_S)
    except redis.RedisError:
        logger.warning("Redis unavailable for the pending call-rate check; failing open")
        return True
    return count <= int(settings.COPILOT_PENDING_CALL_LIMIT)


# --- listening ------------------------------------------------------------------------------


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
    (SPEC §4.8.7); the turn keeps running. Returns how many processes were listening."""
    return int(rs.redis_client().publish(rs.listeners_disconnect_channel(session_id), "1"))


_LOG_PAGE = 500


def _entry_key(entry_id: str) -> tuple[int, int] | None:
    """A stream entry id (``"<ms>-<seq>"`` or ``"<ms>"``) as a comparable pair; None if it is not one.
    Runs for every relayed chunk: string tests, no regular expression."""
    ms, dash, seq = entry_id.partition("-")
    if not (ms.isascii() and ms.isdigit()):
        return None
    if not dash:
        return int(ms), 0
    if not (seq.isascii() and seq.isdigit()):
        return None
    return int(ms), int(seq)


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
    """
    from .live import DISCONNECT, RESYNC, live_hub

    client = rs.loop_redis()
    meta = None
    for _ in range(4):  # the meta may land a moment after a duplicate POST subscribes
        meta = await turn_meta_get_async(client, session_id)
        if meta is not None:
            break
        await _sleep(0.1)
    if meta is None or (turn_id is not None and meta.turn_id != turn_id and not meta.is_running):
        yield StreamItem(None, turn_id or "", {"type": "finish"})
        return
    current_turn = turn_id or meta.turn_id
    key = rs.turn_stream_key(current_turn)
    position = _Position(after)
    heartbeat_s = float(settings.COPILOT_SSE_HEARTBEAT_S)
    async with live_hub().subscribe(current_turn, session_id=session_id) as live:
        # Subscribed (and confirmed by Redis) before the log is read: no chunk can
        # fall between the two, and ids already seen are skipped below.
        backlog = await _log_after(client, key, current_turn, position)
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
                continue
            if got is None:
                yield StreamItem(None, current_turn, None)
                backlog = await _log_after(client, key, current_turn, position)
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
                    await sync_to_async(reap_if_dead)(session_id)
                continue
            entry_id, data = got
            if not position.advance(entry_id):
                continue
            live_item = _decode_entry(entry_id, current_turn, data)
            if live_item is None:
                continue
            yield live_item
            if live_item.is_terminal:
                return


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


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


def iso_from_unix(value: float) -> str:
    return datetime.fromtimestamp(value, tz=UTC).isoformat()
