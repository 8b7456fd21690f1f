"""Message writes: append-only saves with sequences assigned at insert, and the duplicate-message rule."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from chat.errors import SessionNotFound
from chat.models import ChatMessage, ChatSession
from chat.signals import session_first_message_saved
from copilot_site.core import sql

if TYPE_CHECKING:
    from chat.turns.pending import PendingMessage
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

# How many trailing rows one query of the duplicate check reads (the run is usually 1–2 rows).
_DUPLICATE_SCAN_BATCH = 50


def _lock_session(session_id: uuid.UUID | str, user: User | None = None) -> ChatSession:
    """The session row, locked until the end of the transaction.

    Appends to one session are serialised on this row lock (PostgreSQL); on SQLite
    the IMMEDIATE transaction mode already runs one writer at a time. Precondition:
    called inside ``transaction.atomic()``.
    """
    rows = ChatSession.objects.select_for_update()
    if user is not None:
        rows = rows.filter(user=user)
    try:
        return rows.get(pk=session_id)
    except (ChatSession.DoesNotExist, ValueError, TypeError) as exc:
        raise SessionNotFound(session_id) from exc


class FollowLeaf:
    """The default parent of new rows: the session's current leaf."""


FOLLOW_LEAF = FollowLeaf()


def _insert_new_rows(
    session: ChatSession | uuid.UUID | str,
    messages: Sequence[ChatMessage],
    *,
    parent_sequence: int | None | FollowLeaf = FOLLOW_LEAF,
) -> list[ChatMessage]:
    """Insert the rows whose sequence is None, in order, after the DB's last row, each one
    following the one before it on the session's current branch.

    Precondition: inside ``transaction.atomic()``. The first statement touches the
    session's ``updated_at``, which also takes its row lock (or raises
    SessionNotFound when there is no such session), so concurrent appends to one
    session are serialised until the transaction ends. The first new row's parent is
    the session's leaf (or `parent_sequence` when given: an edit branches off there),
    each later one's the row before it, and the last becomes the leaf. Five statements
    in all, written by hand: this runs at every turn's end on the worker
    (`copilot_site.core.sql`). On failure the caller must ``_forget_insert`` the rows.
    """
    new_rows = [row for row in messages if row.sequence is None]
    if not new_rows:
        return []
    session_id = session.pk if isinstance(session, ChatSession) else session
    try:
        touched = sql.update(ChatSession, where={"id": session_id}, values={"updated_at": timezone.now()})
    except (ValidationError, ValueError, TypeError) as exc:  # not a UUID
        raise SessionNotFound(session_id) from exc
    if not touched:
        raise SessionNotFound(session_id)
    top = sql.max_value(ChatMessage, "sequence", where={"session": session_id})
    parent: int | None
    if isinstance(parent_sequence, FollowLeaf):
        parent = sql.value(ChatSession, "leaf_sequence", where={"id": session_id}) if top is not None else None
    else:
        parent = parent_sequence
    start = 0 if top is None else top + 1
    for offset, row in enumerate(new_rows):
        if isinstance(session, ChatSession):
            row.session = session
        else:
            row.session_id = session_id
        row.sequence = start + offset
        row.parent_sequence = parent
        parent = row.sequence
    sql.insert(new_rows)
    sql.update(ChatSession, where={"id": session_id}, values={"leaf_sequence": parent})
    if isinstance(session, ChatSession):
        session.leaf_sequence = parent
    if top is None and any(row.role == ChatMessage.Role.USER for row in new_rows):
        _title_enqueue_on_commit(session)
    return new_rows


def _title_enqueue_on_commit(session: ChatSession | uuid.UUID | str) -> None:
    """An untitled session's first rows hold its first user message: once the
    transaction that saved them commits, the title task is enqueued (never for a
    rolled-back save, never again for later messages): the service announces it
    (`chat.signals.session_first_message_saved`) and `chat.tasks` enqueues."""
    session_id: uuid.UUID | str = session.pk if isinstance(session, ChatSession) else session
    if isinstance(session, ChatSession):
        title = session.title
    else:
        title = ChatSession.objects.filter(pk=session_id).values_list("title", flat=True).first()
    if title:
        return

    def announce() -> None:
        try:
            session_first_message_saved.send(sender=ChatSession, session_id=str(session_id))
        except Exception:
            logger.warning("Could not enqueue title generation for session %s", session_id, exc_info=True)

    transaction.on_commit(announce)


def _forget_insert(rows: Sequence[ChatMessage]) -> None:
    """Undo the in-memory effects of a rolled-back insert: the rows count as new again."""
    for row in rows:
        row.sequence = None  # type: ignore[assignment]  # unsaved rows carry no sequence
        row.parent_sequence = None
        row.pk = None
        row._state.adding = True


def messages_save_new(
    *,
    session_id: uuid.UUID | str,
    messages: Sequence[ChatMessage],
    parent_sequence: int | None | FollowLeaf = FOLLOW_LEAF,
) -> list[ChatMessage]:
    """Append every in-memory row whose ``sequence`` is None; returns the inserted rows.

    The rows follow one another on the session's current branch, the first under the
    session's leaf, or under `parent_sequence` when given (None: a new first row), and
    the last becomes the leaf.

    Existing rows are never rewritten. New rows are recognised by ``sequence is
    None`` (never by list position), so an in-memory prune cannot make a new row
    be skipped. Sequences are assigned here (DB max + 1, consecutive) and written
    back onto the objects. Raises ``DatabaseError``; then no row has a sequence.
    """
    new_rows = [row for row in messages if row.sequence is None]
    if not new_rows:
        return []
    try:
        with transaction.atomic():
            return _insert_new_rows(session_id, new_rows, parent_sequence=parent_sequence)
    except BaseException:
        _forget_insert(new_rows)
        raise


def message_duplicate_of(
    *,
    session_id: uuid.UUID | str,
    content: str | None,
    client_message_id: str | None = None,
    file_ids: Sequence[str] = (),
) -> str | None:
    """The turn id ('' if it has none) of the saved user message that `content` repeats, or None if it is new.

    A repeat has the ``client_message_id`` of a saved row, or the content and the
    attachments (the same ``file_ids``, in order) of a row of the trailing run of user rows
    of the session's current branch. A real repeat is always separated by an assistant row,
    which every finished turn leaves ("yes" → reply → "yes" is accepted).
    """
    if client_message_id:
        found = list(
            ChatMessage.objects.filter(session__pk=session_id, client_message_id=client_message_id).values_list(
                "turn_id", flat=True
            )[:1]
        )
        if found:
            return str(found[0] or "")
    if content is None:
        return None
    from chat.selectors import branch_get, branch_rows

    leaf = ChatSession.objects.filter(pk=session_id).values_list("leaf_sequence", flat=True).first()
    sequences = branch_get(session_id=session_id, leaf_sequence=leaf).sequences
    end = len(sequences)
    while end > 0:
        batch = branch_rows(session_id=session_id, sequences=sequences[max(end - _DUPLICATE_SCAN_BATCH, 0) : end])
        end -= _DUPLICATE_SCAN_BATCH
        for row in reversed(batch):
            if row.role != ChatMessage.Role.USER:
                return None
            if row.content == content and list(row.file_ids or []) == list(file_ids):
                return str(row.turn_id or "")
    return None


def message_client_ids_saved(*, session_id: uuid.UUID | str, client_message_ids: Sequence[str]) -> set[str]:
    """Which of these `client_message_id`s the session already has a row for (one query).

    The database holds at most one row per (session, client_message_id): a second insert
    raises IntegrityError (constraint `chat_message_client_id_unique`).
    """
    if not client_message_ids:
        return set()
    rows = ChatMessage.objects.filter(session__pk=session_id, client_message_id__in=list(client_message_ids))
    return {found for found in rows.values_list("client_message_id", flat=True) if found}


def pending_unsaved(session_id: object, messages: list[PendingMessage]) -> list[PendingMessage]:
    """`messages` without the ones whose `client_message_id` is already saved in the session
    or came earlier in the list: a repeat of a message is never saved twice."""
    ids = [m.client_message_id for m in messages if m.client_message_id]
    if not ids:
        return messages
    seen = message_client_ids_saved(session_id=str(session_id), client_message_ids=ids)
    kept: list[PendingMessage] = []
    for message in messages:
        if message.client_message_id:
            if message.client_message_id in seen:
                logger.info("Pending: dropping a repeat of message %s in %s", message.client_message_id, session_id)
                continue
            seen.add(message.client_message_id)
        kept.append(message)
    return kept


def session_leaf_set(*, session_id: uuid.UUID | str, leaf_sequence: int | None) -> None:
    """Make the branch ending at `leaf_sequence` the current one (None: before the first
    row, where an edit of the first message starts). Precondition: no turn is running in
    the session (its rows would land on the new branch); the caller checks it."""
    if not ChatSession.objects.filter(pk=session_id).update(leaf_sequence=leaf_sequence):
        raise SessionNotFound(session_id)


def session_branch_switch(*, session: ChatSession, sequence: int, turn_running: Callable[[], bool]) -> int:
    """Show the version of the conversation through message `sequence`: the newest branch
    under it becomes the current one (as ChatGPT does); returns the new leaf.

    The session row is locked first, then `turn_running` is asked: a send claims its
    turn in Redis before it saves its row under that same lock, so either the claim is
    seen here (TurnInProgress, nothing changed) or the send's row follows the new leaf.
    """
    from chat.errors import MessageNotFound, TurnInProgress
    from chat.selectors import branch_get

    with transaction.atomic():
        _lock_session(session.pk)
        if turn_running():
            raise TurnInProgress()
        branch = branch_get(session_id=session.pk, leaf_sequence=None)
        if sequence not in branch.parents:
            raise MessageNotFound(sequence)
        leaf = branch.newest_leaf_under(sequence)
        session_leaf_set(session_id=session.pk, leaf_sequence=leaf)
    session.leaf_sequence = leaf
    return leaf
