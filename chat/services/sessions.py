from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.db import transaction

from chat.models import ChatSession
from chat.selectors import session_get_for_user

if TYPE_CHECKING:
    from copilot_site.accounts.models import User


def session_create(*, user: User, title: str | None = None) -> ChatSession:
    return ChatSession.objects.create(user=user, title=title)


def session_choice_remember(*, session: ChatSession, model: str | None, mode: str | None) -> None:
    """Remember the model and mode a message of this chat asked for (the composer's picker
    shows them next time); a None leaves that one as it was."""
    changes = {name: value for name, value in (("model", model), ("mode", mode)) if value}
    changes = {name: value for name, value in changes.items() if getattr(session, name) != value}
    if not changes:
        return
    ChatSession.objects.filter(pk=session.pk).update(**changes)
    for name, value in changes.items():
        setattr(session, name, value)


@transaction.atomic
def session_rename(*, session_id: uuid.UUID | str, user: User, title: str) -> ChatSession:
    session = session_get_for_user(session_id=session_id, user=user)
    session.title = title.strip()[:200]
    session.save(update_fields=["title", "updated_at"])
    return session


@transaction.atomic
def session_delete(*, session_id: uuid.UUID | str, user: User) -> None:
    """Delete a session: stop its running turn, then the rows, then its Redis state.

    The Redis cleanup runs only after the database confirms the delete, so a failed
    delete leaves a working session behind.
    """
    from chat.turns.registry import session_forget, turn_stop_quietly

    session = session_get_for_user(session_id=session_id, user=user)
    turn_stop_quietly(session.pk)
    session.delete()
    transaction.on_commit(lambda: session_forget(session_id=str(session_id)))
