"""Turn writes that touch the database: a failed turn's transcript notice and its record,
and the answer text recovered from a turn's Redis stream.

The Redis side of a turn lives in `chat.turns.registry`; these functions call it,
never the other way round.

Recovery: what the user saw streamed is in the turn's Redis stream (kept for
``TURN_TTL_S``). When the worker dies mid-turn, the reaper saves the text of the
open round from that stream before the failure notice. When the end-of-turn write
fails even after its retries (the database is down), the worker records the turn in
the ``copilot:turn:unsaved`` hash; `turns_recover_unsaved` (a Celery task that
retries itself, and every reap of the session) saves its text once the database is
back. Either way the text is saved once: a turn whose answer row exists is skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from django.db import DatabaseError, transaction

from chat.errors import SessionNotFound
from chat.models import ChatMessage, ChatSession
from chat.services.approvals import approvals_close_for_turn
from chat.services.messages import messages_save_new
from chat.services.usage import turn_usage_fail
from chat.turns import scripts as rs
from chat.turns.registry import TurnMeta, turn_end_orphaned, turn_meta_get, turn_orphan_error

logger = logging.getLogger(__name__)

UNSAVED_TURNS_KEY = "copilot:turn:unsaved"  # hash: turn id -> session id
# Every 15 s until the turn's stream expires (an hour): the text is in Redis until then.
RECOVER_RETRY_S = 15
RECOVER_MAX_RETRIES = rs.TURN_TTL_S // RECOVER_RETRY_S
ANSWER_NOT_SAVED_CODE = "answer_not_saved"
ANSWER_NOT_SAVED_TEXT = (
    "Your answer could not be saved. It is added to this chat as soon as the database is back; "
    "reload the chat in a minute."
)


def turn_stream_text(turn_id: object) -> str:
    """The answer text the turn streamed after its last tool result (earlier rounds are saved
    at their round boundary), rebuilt from the turn's Redis stream; '' when there is none."""
    parts: list[str] = []
    for _entry_id, fields in rs.redis_client().xrange(rs.turn_stream_key(turn_id)):
        try:
            chunk: Any = json.loads(fields.get(b"data") or b"null")
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        if chunk.get("type") == "tool-output-available":
            parts = []
        elif chunk.get("type") == "text-delta" and isinstance(chunk.get("delta"), str):
            parts.append(chunk["delta"])
    return "".join(parts)


def turn_text_save(*, session_id: str, turn_id: str, text: str) -> bool:
    """Save `text` as the turn's answer row unless the turn already has one (an assistant
    row without tool calls that is not a notice); True when it saved it.

    The session row is locked first, so two recoveries of one turn save it once."""
    if not text:
        return False
    with transaction.atomic():
        if not list(ChatSession.objects.select_for_update().filter(pk=session_id).values_list("pk", flat=True)):
            raise SessionNotFound(session_id)
        answered = (
            ChatMessage.objects.filter(session__pk=session_id, turn_id=turn_id, role=ChatMessage.Role.ASSISTANT)
            .filter(kind=ChatMessage.Kind.MESSAGE, tool_calls=[])
            .exists()
        )
        if answered:
            return False
        row = ChatMessage(role=ChatMessage.Role.ASSISTANT, content=text, turn_id=turn_id)
        messages_save_new(session_id=session_id, messages=[row])
    return True


def turn_unsaved_mark(*, session_id: str, turn_id: str) -> None:
    """Remember a turn whose end could not be written and enqueue its recovery
    (`chat.recover_unsaved_turns`, which retries itself). Never raises: the turn's
    stream still ends with its error."""
    try:
        rs.redis_client().hset(UNSAVED_TURNS_KEY, turn_id, session_id)
        _recovery_enqueue()
    except Exception:
        logger.exception("Could not schedule the recovery of turn %s", turn_id)


def _recovery_enqueue() -> None:
    from celery import current_app  # by name: the tasks module sits above the services

    current_app.send_task("chat.recover_unsaved_turns", countdown=RECOVER_RETRY_S)


def turns_recover_unsaved(*, session_id: str | None = None) -> int:
    """Save the streamed text of every turn whose end could not be written (only the
    session's with `session_id`) and mark its record failed with the reason; returns how
    many turns are still waiting (the database is still unavailable)."""
    client = rs.redis_client()
    waiting = 0
    for raw_turn, raw_session in client.hgetall(UNSAVED_TURNS_KEY).items():
        turn_id, owner = raw_turn.decode(), raw_session.decode()
        if session_id is not None and owner != str(session_id):
            continue
        try:
            if turn_text_save(session_id=owner, turn_id=turn_id, text=turn_stream_text(turn_id)):
                logger.info("Recovered the answer of turn %s from its stream", turn_id)
            turn_usage_fail(turn_id=turn_id, error=ANSWER_NOT_SAVED_TEXT)
        except SessionNotFound:
            pass  # deleted meanwhile: nothing left to save into
        except DatabaseError:
            logger.warning("Turn %s still cannot be saved", turn_id, exc_info=True)
            waiting += 1
            continue
        client.hdel(UNSAVED_TURNS_KEY, turn_id)
    return waiting


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
    """End a turn whose worker is gone: the text it had streamed (from its Redis stream),
    then a notice in the transcript, then its Redis state ended as failed. False when the
    turn had already ended."""
    with contextlib.suppress(SessionNotFound):  # deleted meanwhile; turn_record_failure skips it too
        turn_text_save(session_id=session_id, turn_id=turn_id, text=turn_stream_text(turn_id))
    turn_record_failure(session_id=session_id, turn_id=turn_id, error=error)
    approvals_close_for_turn(turn_id=turn_id)  # a tool call it left waiting can no longer run
    return turn_end_orphaned(session_id=session_id, turn_id=turn_id, error=error)


def reap_if_dead(session_id: object) -> bool:
    """End a `running` turn whose worker is gone; True if it did.

    The session then accepts new messages at once, and a late redelivery of the
    task finds the turn no longer running and drops it.
    """
    if rs.redis_client().hlen(UNSAVED_TURNS_KEY):
        turns_recover_unsaved(session_id=str(session_id))
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
