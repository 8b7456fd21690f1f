"""Turn writes that touch the database: a failed turn's transcript notice and its record.

The Redis side of a turn lives in `chat.turns.registry`; these functions call it,
never the other way round.
"""

from __future__ import annotations

import logging

from chat.errors import SessionNotFound
from chat.models import ChatMessage
from chat.services.messages import messages_save_new
from chat.services.usage import turn_usage_fail
from chat.turns.registry import TurnMeta, turn_end_orphaned, turn_meta_get, turn_orphan_error

logger = logging.getLogger(__name__)


def turn_record_failure(*, session_id: str, turn_id: str, error: str) -> None:
    """Leave the failure in the transcript (an assistant notice) and on the turn record."""
    notice = ChatMessage(
        role=ChatMessage.Role.ASSISTANT, kind=ChatMessage.Kind.ERROR_NOTICE, content=error, turn_id=turn_id
    )
    try:
        messages_save_new(session_id=session_id, messages=[notice])
    except SessionNotFound:
        return  # deleted meanwhile: nothing left to annotate
    turn_usage_fail(turn_id=turn_id, error=error)


def turn_fail_orphaned(*, session_id: str, turn_id: str, error: str) -> bool:
    """End a turn whose worker is gone: a notice in the transcript, then its Redis state
    ended as failed. False when the turn had already ended."""
    turn_record_failure(session_id=session_id, turn_id=turn_id, error=error)
    return turn_end_orphaned(session_id=session_id, turn_id=turn_id, error=error)


def reap_if_dead(session_id: object) -> bool:
    """End a `running` turn whose worker is gone; True if it did.

    The session then accepts new messages at once, and a late redelivery of the
    task finds the turn no longer running and drops it.
    """
    orphan = turn_orphan_error(session_id)
    if orphan is None:
        return False
    turn_id, error = orphan
    logger.warning("Turn %s of session %s has no live worker: %s", turn_id, session_id, error)
    return turn_fail_orphaned(session_id=str(session_id), turn_id=turn_id, error=error)


def turn_running(session_id: object, *, reap: bool = False) -> TurnMeta | None:
    """The session's running turn, or None. With `reap`, a turn whose worker is gone is
    ended first (what a client that is about to follow the turn needs)."""
    if reap:
        reap_if_dead(session_id)
    meta = turn_meta_get(session_id)
    return meta if meta is not None and meta.is_running else None
