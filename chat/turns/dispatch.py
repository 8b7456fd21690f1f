"""Sending a message: the one way a turn starts.

`turn_send` serves `POST …/stream`, the WebSocket `send` frame and auto-continue;
`turn_edit` and `turn_regenerate` start a turn on a new branch of the transcript
(`POST …/messages/{sequence}/versions`), refused with 409 while a turn runs.
In order: ownership (404) → the attachments (`file_ids`: more than COPILOT_MAX_FILE_IDS
is a 400; the rest are filtered to the sender's own files that are not deleted, others
dropped without a word; no text and no file is a 400) → reap a turn whose worker died →
duplicate check (same `client_message_id`, or the same text and files still unanswered) → if a turn is
running, queue the message (202 / `queued`) → pre-turn rate-limit check (429) →
atomic claim → persist stale queued rows and the user row and the turn record
in one transaction → enqueue the Celery task after commit.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.db import DatabaseError, transaction

from chat.engine.request import TurnRequest
from chat.errors import ChatError, SessionNotFound, TooManyFiles, TurnInProgress
from chat.models import ChatMessage, ChatSession, ModeChoice, ModelChoice
from chat.selectors import attachment_ids_usable
from chat.services.messages import (
    FOLLOW_LEAF,
    FollowLeaf,
    message_duplicate_of,
    messages_save_new,
    pending_unsaved,
    session_leaf_set,
)
from chat.services.sessions import session_choice_remember
from chat.services.turns import reap_if_dead, turn_record_failure, turn_running
from chat.services.usage import turn_usage_create
from ratelimits import user_caps

from .notify import notify_session
from .pending import (
    PENDING_DUPLICATE_QUEUED,
    PENDING_DUPLICATE_RUNNING,
    PENDING_FULL,
    PENDING_FULL_RETRY_AFTER_S,
    PendingMessage,
    pending_call_allowed,
    pending_drain,
    pending_peek,
    pending_push,
    pending_requeue,
)
from .registry import mark_session_completed, turn_claim

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

Outcome = Literal["started", "queued", "duplicate"]


class TooManyQueuedMessages(ChatError):
    status = 429
    code = "too_many_queued"


class PendingBufferFull(TooManyQueuedMessages):
    """The session's follow-up buffer is full: the message is refused, never queued and dropped."""

    code = "pending_full"

    def __init__(self) -> None:
        limit = int(settings.COPILOT_PENDING_MAX)
        super().__init__(
            f"This chat already has {limit} messages waiting for the current reply; "
            "send this one once the reply has taken them.",
            extra={"code": "pending_full", "pending_max": limit},
            headers={"Retry-After": str(PENDING_FULL_RETRY_AFTER_S)},
        )


class EmptyMessage(ChatError):
    """Neither text nor a file the sender may attach."""

    status = 400
    code = "invalid_message"


class ChatUnavailable(ChatError):
    status = 503
    code = "unavailable"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    turn_id: str | None = None
    buffer_length: int = 0
    turn_in_flight: bool = False

    def queued_body(self) -> dict[str, Any]:
        return {
            "buffer_length": self.buffer_length,
            "max_buffer_length": settings.COPILOT_PENDING_MAX,
            "turn_in_flight": self.turn_in_flight,
        }


def turn_send(
    *,
    user: User,
    session_id: object,
    message: str,
    client_message_id: str | None = None,
    context: dict[str, str] | None = None,
    mode: str | None = None,
    model: str | None = None,
    origin_id: str = "chat_stream",
    origin_name: str = "chat",
    next_turn: bool = False,
    file_ids: Sequence[str] = (),
) -> SendResult:
    arrival = time.time()
    session = _session_for(user, session_id)
    attached = _usable_file_ids(user, file_ids)
    if not message.strip() and not attached:
        raise EmptyMessage("Message must not be blank.")
    reap_if_dead(session.pk)
    duplicate_of = _duplicate_turn(session, message, client_message_id, attached)
    if duplicate_of is not None:
        logger.info("Duplicate message detected for session %s, skipping enqueue", session.pk)
        return SendResult("duplicate", turn_id=duplicate_of or None, turn_in_flight=_in_flight(session.pk))
    running = _in_flight(session.pk)
    pending = PendingMessage(
        content=message,
        enqueued_at=arrival,
        context=context,
        client_message_id=client_message_id,
        next_turn=next_turn,
        file_ids=tuple(attached),
    )
    user_caps.user_send_check(user=user)
    model, mode = _choice(session, user, model=model, mode=mode)
    if running:
        user_caps.turn_queue_check(user=user, queued=_user_queued(user))
        return _queue(session, user, pending)
    _check_rate_limit(user)
    turn_id = _claim_within_caps(session, user, origin_id, origin_name, client_message_id)
    if turn_id is None:  # another send won the race between our read and our claim
        return _queue(session, user, pending, count_call=False)
    payload = TurnRequest(
        session_id=str(session.pk),
        turn_id=turn_id,
        user_id=user.pk,
        mode=mode,
        model=model,
        page_context=context,
        arrived_at=arrival,
        claimed_at=time.time(),
    ).to_payload()
    _start(session, user, turn_id, [pending], payload)
    return SendResult("started", turn_id=turn_id, turn_in_flight=True)


def turn_edit(
    *,
    user: User,
    session_id: object,
    sequence: int,
    message: str,
    client_message_id: str | None = None,
    mode: str | None = None,
    model: str | None = None,
) -> SendResult:
    """Edit the user message `sequence`: the new text is a new version of it, a sibling
    under the same parent, with the same files, and starts a turn on that new branch. The old version and
    everything after it stay (switch back with `session_branch_switch`). Refused with
    TurnInProgress (409) while a turn runs; then nothing is saved."""
    session = _session_for(user, session_id)
    reap_if_dead(session.pk)
    if client_message_id:
        found = message_duplicate_of(session_id=session.pk, content=None, client_message_id=client_message_id)
        if found is not None:  # a retried edit: the turn it started
            return SendResult("duplicate", turn_id=found or None, turn_in_flight=_in_flight(session.pk))
    from chat.selectors import edit_branch_point, message_get

    parent = edit_branch_point(session_id=session.pk, sequence=sequence)
    # The new version carries the edited message's files (those still the user's and not deleted).
    kept = _usable_file_ids(user, list(message_get(session_id=session.pk, sequence=sequence).file_ids or []))
    pending = PendingMessage(
        content=message, enqueued_at=time.time(), client_message_id=client_message_id, file_ids=tuple(kept)
    )
    return _start_version(session, user, parent, [pending], mode=mode, model=model, client_message_id=client_message_id)


def turn_regenerate(
    *, user: User, session_id: object, sequence: int, mode: str | None = None, model: str | None = None
) -> SendResult:
    """Answer again the message that the answer holding row `sequence` replies to: a new
    turn whose rows are a new version of that answer (a sibling of its first row). The
    earlier answer stays. Refused with TurnInProgress (409) while a turn runs."""
    session = _session_for(user, session_id)
    reap_if_dead(session.pk)
    from chat.selectors import regenerate_branch_point

    anchor = regenerate_branch_point(session_id=session.pk, sequence=sequence)
    return _start_version(session, user, anchor, [], mode=mode, model=model, client_message_id=None)


def _start_version(
    session: ChatSession,
    user: User,
    branch_from: int | None,
    messages: list[PendingMessage],
    *,
    mode: str | None,
    model: str | None,
    client_message_id: str | None,
) -> SendResult:
    """A turn on a new branch from `branch_from`, after the checks of a send: no turn
    running (409, never queued: a queued edit would land on whichever branch is current
    when it runs), the send caps, the rate limit, the claim."""
    if _in_flight(session.pk):
        raise TurnInProgress()
    arrival = time.time()
    user_caps.user_send_check(user=user)
    model, mode = _choice(session, user, model=model, mode=mode)
    _check_rate_limit(user)
    turn_id = _claim_within_caps(session, user, "chat_stream", "chat", client_message_id)
    if turn_id is None:  # another send claimed the session between our check and our claim
        raise TurnInProgress()
    payload = TurnRequest(
        session_id=str(session.pk),
        turn_id=turn_id,
        user_id=user.pk,
        mode=mode,
        model=model,
        arrived_at=arrival,
        claimed_at=time.time(),
    ).to_payload()
    _start(session, user, turn_id, messages, payload, branch_from=branch_from)
    return SendResult("started", turn_id=turn_id, turn_in_flight=True)


def turn_auto_continue(*, session_id: str) -> str | None:
    """After a completed turn, start the next one if follow-ups are still queued."""
    if not pending_peek(session_id):
        return None
    session = ChatSession.objects.select_related("user").filter(pk=session_id).first()
    if session is None:
        return None
    turn_id = turn_claim(
        session_id=session.pk, user_id=session.user_id, origin_id="auto_continue", origin_name="auto_continue"
    )
    if turn_id is None:
        return None  # a new send claimed it; that turn drains the buffer itself
    user_caps.turn_slot_hold(user_id=session.user_id, session_id=session.pk, turn_id=turn_id)
    now = time.time()
    model, mode = _choice(session, session.user, model=None, mode=None)
    payload = TurnRequest(
        session_id=str(session.pk),
        turn_id=turn_id,
        user_id=session.user_id,
        mode=mode,
        model=model,
        arrived_at=now,
        claimed_at=now,
    ).to_payload()
    _start(session, session.user, turn_id, [], payload)
    return turn_id


def _choice(session: ChatSession, user: User, *, model: str | None, mode: str | None) -> tuple[str | None, str | None]:
    """The model and mode a turn runs with: what the message asked for (then remembered on
    the chat), else the chat's last choice, else the user's defaults (account page), else
    None (the site's: `standard`, COPILOT_DEFAULT_MODE). A value that is neither choice
    (a WebSocket frame's text is not checked against them) counts as no choice."""
    model = model if model in ModelChoice.values else None
    mode = mode if mode in ModeChoice.values else None
    session_choice_remember(session=session, model=model, mode=mode)
    return (model or session.model or user.chat_model or None, mode or session.mode or user.chat_mode or None)


def _user_queued(user: User) -> int:
    """The user's follow-ups waiting in the buffers of their running turns' sessions."""
    return sum(len(pending_peek(sid)) for sid in user_caps.running_sessions(user_id=user.pk))


def _claim_within_caps(
    session: ChatSession, user: User, origin_id: str, origin_name: str, client_message_id: str | None
) -> str | None:
    """Take one of the user's running-turn slots (429 when full), then claim the session;
    the slot is given back when another send claimed it first."""
    turn_id = str(uuid.uuid4())
    user_caps.turn_slot_reserve(user=user, session_id=session.pk, turn_id=turn_id, queued=_user_queued(user))
    claimed = turn_claim(
        session_id=session.pk,
        user_id=user.pk,
        origin_id=origin_id,
        origin_name=origin_name,
        client_message_id=client_message_id,
        turn_id=turn_id,
    )
    if claimed is None:
        user_caps.turn_slot_release(user_id=user.pk, session_id=session.pk, turn_id=turn_id)
    return claimed


def _session_for(user: User, session_id: object) -> ChatSession:
    from chat.selectors import session_get_for_user

    return session_get_for_user(session_id=str(session_id), user=user)


def _in_flight(session_id: object) -> bool:
    return turn_running(session_id) is not None


def _usable_file_ids(user: User, file_ids: Sequence[str]) -> list[str]:
    """The attachments a message may carry: more than COPILOT_MAX_FILE_IDS ids is a 400; of
    the rest only UUID-format ids of the sender's own files that are not deleted are kept
    (lower-case, once each, in order); others are dropped without a word."""
    limit = int(settings.COPILOT_MAX_FILE_IDS)
    if len(file_ids) > limit:
        raise TooManyFiles(
            f"A message can carry at most {limit} files.", extra={"code": TooManyFiles.code, "max_file_ids": limit}
        )
    return attachment_ids_usable(user=user, file_ids=list(file_ids)) if file_ids else []


def _duplicate_turn(
    session: ChatSession, message: str, client_message_id: str | None, file_ids: Sequence[str] = ()
) -> str | None:
    """The turn id ('' if unknown) a repeated send belongs to, or None if it is new.

    A repeat of a saved message (`message_duplicate_of`), or of a queued one: the same
    `client_message_id`, or the same text and attachments as the last follow-up queued while
    a turn runs. The same text with other attachments is a new message.
    """
    found = message_duplicate_of(
        session_id=session.pk, content=message, client_message_id=client_message_id, file_ids=file_ids
    )
    if found is not None:
        return found
    queued = pending_peek(session.pk)
    if client_message_id and any(p.client_message_id == client_message_id for p in queued):
        return ""
    last = queued[-1] if queued else None
    repeats_last = last is not None and last.content == message and list(last.file_ids) == list(file_ids)
    if repeats_last and _in_flight(session.pk):
        return ""
    return None


def _queue(session: ChatSession, user: User, pending: PendingMessage, *, count_call: bool = True) -> SendResult:
    if count_call and not pending_call_allowed(user.pk):
        raise TooManyQueuedMessages(
            f"Too many queued message requests this minute: limit is {settings.COPILOT_PENDING_CALL_LIMIT} "
            f"per {settings.COPILOT_PENDING_CALL_WINDOW_S}s across all sessions"
        )
    length = pending_push(session.pk, pending)
    if length == PENDING_FULL:
        raise PendingBufferFull()
    if length == PENDING_DUPLICATE_QUEUED:
        return SendResult("duplicate", turn_in_flight=_in_flight(session.pk))
    if length == PENDING_DUPLICATE_RUNNING:
        meta = turn_running(session.pk)
        return SendResult("duplicate", turn_id=meta.turn_id if meta else None, turn_in_flight=meta is not None)
    return SendResult("queued", buffer_length=length, turn_in_flight=_in_flight(session.pk))


def _check_rate_limit(user: User) -> None:
    from ratelimits import services as ratelimit_services

    check = getattr(ratelimit_services, "turn_allowed_check", None)
    if check is not None:
        check(user=user)


def _start(
    session: ChatSession,
    user: User,
    turn_id: str,
    messages: list[PendingMessage],
    payload: dict[str, Any],
    *,
    branch_from: int | None | FollowLeaf = FOLLOW_LEAF,
) -> None:
    """Save the turn's user rows and record, then enqueue it. With `branch_from`, the
    session's current branch is first moved back to end there (an edit or a regenerate),
    so the rows and the turn continue from that point."""
    from chat.tasks import run_turn as run_turn_task

    # Stale follow-ups (queued before this claim) go first, so the DB stays chronological.
    stale = pending_drain(session.pk)
    try:
        with transaction.atomic():
            if not isinstance(branch_from, FollowLeaf):
                session_leaf_set(session_id=session.pk, leaf_sequence=branch_from)
            rows = pending_unsaved(session.pk, [*stale, *messages])
            messages_save_new(
                session_id=session.pk,
                messages=[
                    ChatMessage(
                        role=ChatMessage.Role.USER,
                        content=m.content,
                        client_message_id=m.client_message_id,
                        turn_id=turn_id,
                        file_ids=list(m.file_ids),
                    )
                    for m in rows
                ],
            )
            turn_usage_create(turn_id=turn_id, session=session, user=user)
            transaction.on_commit(lambda: _enqueue(run_turn_task, session.pk, turn_id, payload))
            transaction.on_commit(
                lambda: notify_session(session.pk, {"type": "turn.started", "turn_id": turn_id}), robust=True
            )
    except DatabaseError:
        pending_requeue(session.pk, stale)
        mark_session_completed(session.pk, error_message="Failed to save the message.", turn_id=turn_id)
        raise


def _enqueue(task: Any, session_id: object, turn_id: str, payload: dict[str, Any]) -> None:
    try:
        task.apply_async(kwargs={"payload": payload})
    except Exception as exc:
        logger.exception("Failed to enqueue turn %s", turn_id)
        turn_record_failure(session_id=str(session_id), turn_id=turn_id, error="Failed to start the turn.")
        mark_session_completed(session_id, error_message="Failed to start the turn.", turn_id=turn_id)
        raise ChatUnavailable("Chat service unavailable, please retry.") from exc


__all__ = [
    "ChatUnavailable",
    "PendingBufferFull",
    "SendResult",
    "SessionNotFound",
    "TooManyQueuedMessages",
    "TurnInProgress",
    "turn_edit",
    "turn_regenerate",
    "turn_send",
]
