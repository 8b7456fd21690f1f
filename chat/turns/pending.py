"""The pending buffer: follow-ups queued while a session's turn runs, in Redis.

A running turn takes them at its start and at every tool-round boundary; the
ones left when it ends start the next turn (auto-continue).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings

from . import scripts as rs

logger = logging.getLogger(__name__)


# An upper bound for one drain, far above what the buffer can hold.
PENDING_DRAIN_MAX = 1000


@dataclass(frozen=True)
class PendingMessage:
    content: str
    enqueued_at: float = field(default_factory=time.time)
    context: dict[str, str] | None = None
    client_message_id: str | None = None
    # "Send as the next turn": never injected at a tool-round boundary, only
    # picked up when the next turn starts.
    next_turn: bool = False
    # The attachments the message carries (checked ids of the sender's own files, in order).
    file_ids: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "content": self.content,
                "enqueued_at": self.enqueued_at,
                "context": self.context,
                "client_message_id": self.client_message_id,
                "next_turn": self.next_turn,
                "file_ids": list(self.file_ids),
            }
        )

    @classmethod
    def from_raw(cls, raw: bytes | str) -> PendingMessage | None:
        try:
            data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
            content = data["content"]
            raw_ids = data.get("file_ids") or []
            file_ids = tuple(str(file_id) for file_id in raw_ids) if isinstance(raw_ids, list) else ()
            if not isinstance(content, str) or not (content or file_ids):
                raise ValueError("empty content")
            context = data.get("context")
            return cls(
                content=content,
                enqueued_at=float(data.get("enqueued_at") or 0),
                context=context if isinstance(context, dict) else None,
                client_message_id=data.get("client_message_id"),
                next_turn=bool(data.get("next_turn", False)),
                file_ids=file_ids,
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            logger.warning("Pending buffer: dropping malformed entry %r", raw[:200])
            return None


# What `pending_push` answers instead of a length when it queued nothing.
PENDING_FULL = rs.PENDING_FULL
PENDING_DUPLICATE_QUEUED = rs.PENDING_DUPLICATE_QUEUED
PENDING_DUPLICATE_RUNNING = rs.PENDING_DUPLICATE_RUNNING
# How long a client told "the buffer is full" should wait: the running turn takes
# the buffer at its next tool round or at its end.
PENDING_FULL_RETRY_AFTER_S = 5


def pending_push(session_id: object, message: PendingMessage) -> int:
    """Queue a follow-up; returns the buffer's new length.

    One atomic step: a full buffer (COPILOT_PENDING_MAX entries) refuses it
    (PENDING_FULL) and nothing queued is ever dropped; a `client_message_id`
    already queued, or the running turn's own, is not queued twice
    (PENDING_DUPLICATE_QUEUED / PENDING_DUPLICATE_RUNNING).
    """
    return rs.pending_push_if_room(
        rs.pending_key(session_id),
        rs.turn_meta_key(session_id),
        message.to_json(),
        int(settings.COPILOT_PENDING_MAX),
        rs.PENDING_TTL_S,
        message.client_message_id,
    )


def pending_drain(session_id: object) -> list[PendingMessage]:
    """Take every queued follow-up, oldest first, atomically (LPOP count).

    Every entry: a re-queue can leave more than COPILOT_PENDING_MAX in the buffer. Repeats of
    saved messages are the caller's to drop (`chat.services.messages.pending_unsaved`).
    """
    try:
        raw = rs.lpop_many(rs.pending_key(session_id), PENDING_DRAIN_MAX)
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
