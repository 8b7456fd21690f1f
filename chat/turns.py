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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from . import redis_scripts as rs

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
    """Append one wire chunk to the turn's stream; returns its event id."""
    pipe = rs.redis_client().pipeline(transaction=False)
    pipe.xadd(rs.turn_stream_key(turn_id), {"data": json.dumps(chunk, separators=(",", ":"))})
    pipe.expire(rs.turn_stream_key(turn_id), rs.TURN_TTL_S)
    event_id, _ = pipe.execute()
    return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


def mark_session_completed(session_id: object, *, error_message: str | None = None, turn_id: str | None = None) -> bool:
    """The one place a turn ends (SPEC §4.6.5): CAS the status, free the session, publish.

    Order matters: status first (only the first finisher wins), then the cluster
    lock is force-deleted so the next turn can start at once, then `error` (if
    any) and `finish` go to the stream. Returns False, doing nothing else, when
    the turn had already ended (or `turn_id` is not the current turn).
    """
    meta_key = rs.turn_meta_key(session_id)
    meta = turn_meta_get(session_id)
    if meta is None or (turn_id is not None and meta.turn_id != turn_id):
        return False
    new_status = STATUS_FAILED if error_message else STATUS_COMPLETED
    if not rs.hash_compare_and_set(meta_key, "status", STATUS_RUNNING, new_status):
        return False
    if not error_message:
        _record_duration(meta)
    client = rs.redis_client()
    try:
        client.delete(rs.cluster_lock_key(session_id), rs.alive_key(session_id))
    except redis.RedisError:
        logger.exception("Could not delete the cluster lock of session %s; its TTL will expire it", session_id)
    try:
        if error_message:
            publish_chunk(meta.turn_id, {"type": "error", "errorText": error_message})
        publish_chunk(meta.turn_id, {"type": "finish"})
    except redis.RedisError:
        logger.exception("Failed to publish the end of turn %s; listeners fall back to the status", meta.turn_id)
    return True


def _record_duration(meta: TurnMeta) -> None:
    """The turn's wall time on its last assistant row (best effort), before `finish` goes
    out, so the page's stream-end refetch can say "Thought for Ns"."""
    from django.db import DatabaseError

    from .models import ChatMessage

    duration_ms = max(0, int((time.time() - meta.created_at) * 1000))
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
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(session_group(session_id), message)
    except Exception:  # noqa: BLE001 - a notification must never fail a turn
        logger.warning("Could not notify session group %s", session_id, exc_info=True)


def session_group(session_id: object) -> str:
    return f"chat_session_{session_id}"


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


@dataclass(frozen=True)
class StreamItem:
    """One chunk of a turn's log (`event_id` None for synthesized ones) or a heartbeat."""

    event_id: str | None
    turn_id: str
    chunk: dict[str, Any] | None  # None = heartbeat

    @property
    def is_terminal(self) -> bool:
        return self.chunk is not None and self.chunk.get("type") == "finish"


async def follow_turn(
    session_id: object, *, after: str | None = None, turn_id: str | None = None
) -> AsyncIterator[StreamItem]:
    """Replay a turn's events from its start (or after `after`), then follow it live.

    Ends after `finish`. Heartbeats come as items with `chunk=None` every
    COPILOT_SSE_HEARTBEAT_S of silence; on each one the status is re-read, so a
    lost `finish` (or a dead worker) still ends the stream.
    """
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
    last_id = after or "0-0"
    block_ms = int(settings.COPILOT_SSE_HEARTBEAT_S * 1000)
    while True:
        response = await client.xread({key: last_id}, block=block_ms, count=500)
        if response:
            for entry_id, fields in response[0][1]:
                last_id = entry_id.decode()
                item = _decode_entry(last_id, current_turn, fields)
                if item is None:
                    continue
                yield item
                if item.is_terminal:
                    return
            continue
        yield StreamItem(None, current_turn, None)
        meta = await turn_meta_get_async(client, session_id)
        if meta is None or meta.turn_id != current_turn or not meta.is_running:
            newer = await client.xread({key: last_id}, count=500)
            if not newer:
                yield StreamItem(None, current_turn, {"type": "finish"})
                return
        elif meta.started_at is not None or time.time() - meta.created_at > 5:
            await sync_to_async(reap_if_dead)(session_id)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _decode_entry(entry_id: str, turn_id: str, fields: dict[bytes, bytes]) -> StreamItem | None:
    try:
        chunk = json.loads(fields[b"data"])
    except (KeyError, ValueError):
        logger.warning("Unreadable entry %s in turn %s", entry_id, turn_id)
        return None
    chunk_type = chunk.get("type") if isinstance(chunk, dict) else None
    if not isinstance(chunk_type, str) or not (chunk_type in WIRE_TYPES or chunk_type.startswith("data-")):
        logger.warning("Unknown chunk type: %r", chunk_type)
        return None
    return StreamItem(entry_id, turn_id, chunk)


def iso_from_unix(value: float) -> str:
    return datetime.fromtimestamp(value, tz=UTC).isoformat()
