"""Making and revoking share links (see `chat.models.SharedChat`)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction

from chat.models import ChatMessage, SharedChat
from chat.selectors import session_branch_messages, session_get_for_user
from chat.services.turns import turn_running
from chat.shares import TOKEN_BYTES, share_get_for_user, share_token_hash

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

# The roles a snapshot keeps; `system` rows are the platform's own.
SNAPSHOT_ROLES = (
    ChatMessage.Role.USER,
    ChatMessage.Role.ASSISTANT,
    ChatMessage.Role.REASONING,
    ChatMessage.Role.TOOL,
)


@dataclass(frozen=True)
class CreatedShare:
    share: SharedChat
    token: str


def _snapshot_row(row: ChatMessage, *, hide_tool_internals: bool) -> dict[str, Any]:
    return {
        "sequence": row.sequence,
        "role": row.role,
        "kind": row.kind,
        "content": row.content,
        "name": row.name,
        "tool_call_id": row.tool_call_id,
        "tool_calls": [] if hide_tool_internals else (row.tool_calls or []),
        "duration_ms": row.duration_ms,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
    }


def snapshot_messages(
    rows: list[ChatMessage], *, hide_tool_internals: bool, running_turn_id: str | None
) -> list[dict[str, Any]]:
    """The rows a snapshot holds: a running turn's rows are left out (its answer is not
    finished); with ``hide_tool_internals``, tool rows and the tool calls on assistant rows
    are, and an assistant row left with no text by that."""
    kept: list[dict[str, Any]] = []
    for row in rows:
        if row.role not in SNAPSHOT_ROLES:
            continue
        if running_turn_id is not None and str(row.turn_id) == running_turn_id:
            continue
        if hide_tool_internals:
            if row.role == ChatMessage.Role.TOOL:
                continue
            if (
                row.role == ChatMessage.Role.ASSISTANT
                and row.kind == ChatMessage.Kind.MESSAGE
                and not (row.content or "").strip()
            ):
                continue
        kept.append(_snapshot_row(row, hide_tool_internals=hide_tool_internals))
    return kept


def share_create(*, user: User, session_id: uuid.UUID | str, hide_tool_internals: bool) -> CreatedShare:
    """A new link to a snapshot of the user's chat as it is now; the token is returned once."""
    session = session_get_for_user(session_id=session_id, user=user)
    running = turn_running(session.pk)
    rows = session_branch_messages(session=session)  # the version shown, never the other branches
    token = secrets.token_urlsafe(TOKEN_BYTES)
    share = SharedChat.objects.create(
        session=session,
        token_hash=share_token_hash(token),
        title=session.title or "",
        messages=snapshot_messages(
            rows, hide_tool_internals=hide_tool_internals, running_turn_id=str(running.turn_id) if running else None
        ),
        hide_tool_internals=hide_tool_internals,
    )
    return CreatedShare(share=share, token=token)


@transaction.atomic
def share_revoke(*, user: User, share_id: uuid.UUID | str) -> None:
    """Delete the user's share: its link answers 404 from now on."""
    share_get_for_user(share_id=share_id, user=user).delete()
