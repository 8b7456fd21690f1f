"""The turn registry: a session's turn state in Redis (claim, completion, reaping,
cancel). Shared by the web process (API, SSE, WebSocket) and the worker.

At most one turn runs per session: the claim is one Lua script on the turn-meta
hash (`status` must not already be `running`), so any number of web processes
racing on one session start exactly one turn.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

from ratelimits import user_caps

from . import scripts as rs
from .notify import completion_notice, notify_user, notify_user_async

logger = logging.getLogger(__name__)

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
WORKER_LOST_ERROR = (
    "The worker running this reply stopped unexpectedly. What it produced so far is saved; please try again."
)
NEVER_STARTED_ERROR = "No worker picked up this reply in time. Please try again."
CANCEL_WAIT_S = 5.0

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


def turn_claim(
    *,
    session_id: object,
    user_id: object,
    origin_id: str,
    origin_name: str,
    client_message_id: str | None = None,
    turn_id: str | None = None,
) -> str | None:
    """Atomically mark the session as running a new turn; the new turn id, or None if one runs.

    The claim records the `client_message_id` of the message that starts the turn, so a
    copy of that message that loses the claim is recognised when it is queued. `turn_id`
    is the id reserved beforehand (the user's running-turn slot), else a new one.
    """
    turn_id = turn_id or str(uuid.uuid4())
    mapping = {
        "status": STATUS_RUNNING,
        "turn_id": turn_id,
        "user_id": str(user_id),
        "created_at": f"{time.time():.6f}",
        "origin_id": origin_id,
        "origin_name": origin_name,
    }
    if client_message_id:
        mapping["client_message_id"] = client_message_id
    claimed = rs.hash_set_if_not_equal(rs.turn_meta_key(session_id), "status", STATUS_RUNNING, mapping, rs.TURN_TTL_S)
    return turn_id if claimed else None


# --- publishing ---------------------------------------------------------------------------


def mark_session_completed(session_id: object, *, error_message: str | None = None, turn_id: str | None = None) -> bool:
    """The one place a turn ends: CAS the status, free the session, publish.

    One Redis step (`scripts.complete_turn`) keeps the order: status first
    (only the first finisher wins), then the cluster lock is deleted so the next
    turn can start at once, then `error` (if any) and `finish` go to the stream.
    Returns False, doing nothing else, when the turn had already ended (or
    `turn_id` is not the current turn). Only Redis is touched: a turn's wall time
    is written by the worker's engine with its last assistant row.
    """
    meta = turn_meta_get(session_id)
    if meta is None or not meta.is_running or (turn_id is not None and meta.turn_id != turn_id):
        return False
    status, chunks = _completion(error_message)
    if not rs.complete_turn(session_id, meta.turn_id, status, chunks):
        return False
    user_caps.turn_slot_release(user_id=meta.user_id, session_id=session_id, turn_id=meta.turn_id)
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
    await user_caps.turn_slot_release_async(client, user_id=user_id, session_id=session_id, turn_id=turn_id)
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


def turn_orphan_error(session_id: object) -> tuple[str, str] | None:
    """The running turn that no worker serves, as (turn_id, the error it ends with); None if none.

    A worker refreshes `copilot:turn:alive:{sid}` every few seconds. When the key
    has expired after the worker started, the worker died (kill -9, OOM, host
    loss). A turn no worker picked up within COPILOT_TURN_START_TIMEOUT_S is an
    orphan too. (`chat.services.turns.reap_if_dead` fails such a turn.)
    """
    meta = turn_meta_get(session_id)
    if meta is None or not meta.is_running:
        return None
    if rs.redis_client().exists(rs.alive_key(session_id)):
        return None
    if meta.started_at is not None:
        return meta.turn_id, WORKER_LOST_ERROR
    if time.time() - meta.created_at > settings.COPILOT_TURN_START_TIMEOUT_S:
        return meta.turn_id, NEVER_STARTED_ERROR
    return None


def turn_end_orphaned(*, session_id: str, turn_id: str, error: str) -> bool:
    """End a turn whose worker is gone, in Redis: its stream lock freed (the dead worker
    can no longer release it), then completion as failed."""
    rs.compare_and_delete(rs.stream_lock_key(session_id), turn_id)
    return mark_session_completed(session_id, error_message=error, turn_id=turn_id)


# --- cancel --------------------------------------------------------------------------------


def turn_cancel_request(session_id: object) -> dict[str, Any]:
    """Ask the worker to stop; wait up to 5 s, then force the turn to end."""
    meta = turn_meta_get(session_id)
    if meta is None or not meta.is_running:
        return {"cancelled": True, "reason": "no_active_session"}
    rs.redis_client().set(rs.cancel_key(session_id), meta.turn_id, ex=rs.CANCEL_TTL_S)
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


def iso_from_unix(value: float) -> str:
    return datetime.fromtimestamp(value, tz=UTC).isoformat()
