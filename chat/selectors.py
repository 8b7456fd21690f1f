from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet, Sum

from .errors import AttachmentNotFound, MessageNotFound, NotEditable, SessionNotFound
from .models import (
    STOPPED_TEXT,
    Attachment,
    ChatMessage,
    ChatSession,
    ContextSnapshot,
    Memory,
    ToolApproval,
    ToolApprovalThreshold,
    TurnUsage,
)

if TYPE_CHECKING:
    from copilot_site.accounts.models import User


def session_get_for_user(*, session_id: uuid.UUID | str, user: User) -> ChatSession:
    """The user's session, or SessionNotFound — identical for missing and foreign ids."""
    try:
        return ChatSession.objects.get(pk=session_id, user=user)
    except (ChatSession.DoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise SessionNotFound(session_id) from exc


# ---------------------------------------------------------------- attachments


def canonical_file_id(value: object) -> str | None:
    """``value`` as a lower-case hyphenated UUID, or None when it is not one (any case accepted)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def attachment_get_for_user(*, attachment_id: object, user: User) -> Attachment:
    """The user's own, not deleted attachment, or AttachmentNotFound: the same 404 for a
    missing, foreign, deleted or malformed id."""
    canonical = canonical_file_id(attachment_id)
    found = Attachment.objects.filter(pk=canonical, owner=user, deleted_at__isnull=True).first() if canonical else None
    if found is None:
        raise AttachmentNotFound(attachment_id)
    return found


def attachment_list(*, user: User) -> QuerySet[Attachment]:
    """The user's attachments that are not deleted, newest first."""
    return Attachment.objects.filter(owner=user, deleted_at__isnull=True).order_by("-created_at", "-pk")


def attachment_usage_bytes(*, user_id: int) -> int:
    """What the user's attachments that are not deleted take in the storage."""
    total = Attachment.objects.filter(owner_id=user_id, deleted_at__isnull=True).aggregate(total=Sum("size_bytes"))
    return int(total["total"] or 0)


@dataclass(frozen=True)
class OwnerAttachmentTotals:
    owner_id: int
    username: str
    email: str
    files: int
    stored_bytes: int  # files not deleted: what the quota counts
    deleted_files: int  # deleted by the owner, bytes kept until the purge
    deleted_bytes: int


def attachment_totals_per_owner(*, limit: int = 200) -> list[OwnerAttachmentTotals]:
    """Per user with files: counts and bytes (kept and awaiting the purge), largest first."""
    from django.db.models import Count, Value
    from django.db.models.functions import Coalesce

    live, gone = Q(deleted_at__isnull=True), Q(deleted_at__isnull=False)
    rows = (
        Attachment.objects.values("owner_id", "owner__username", "owner__email")
        .annotate(
            files=Count("pk", filter=live),
            # 0, not NULL, for no bytes: NULL sorts first in a descending order on PostgreSQL.
            stored_bytes=Coalesce(Sum("size_bytes", filter=live), Value(0)),
            deleted_files=Count("pk", filter=gone),
            deleted_bytes=Coalesce(Sum("size_bytes", filter=gone), Value(0)),
        )
        .order_by("-stored_bytes", "owner_id")[:limit]
    )
    return [
        OwnerAttachmentTotals(
            owner_id=row["owner_id"],
            username=row["owner__username"],
            email=row["owner__email"],
            files=row["files"],
            stored_bytes=int(row["stored_bytes"] or 0),
            deleted_files=row["deleted_files"],
            deleted_bytes=int(row["deleted_bytes"] or 0),
        )
        for row in rows
    ]


def attachment_ids_usable(*, user: User, file_ids: list[str]) -> list[str]:
    """The ids of ``file_ids`` a message of ``user`` may carry, in their order, once each:
    UUID-format ids (any case; returned lower-case) of the user's own attachments that are
    not deleted. Any other id is dropped without a word (it tells nothing about other users)."""
    canonical: list[str] = []
    for raw in file_ids:
        value = canonical_file_id(raw)
        if value is not None and value not in canonical:
            canonical.append(value)
    if not canonical:
        return []
    owned = {
        str(pk)
        for pk in Attachment.objects.filter(pk__in=canonical, owner=user, deleted_at__isnull=True).values_list(
            "pk", flat=True
        )
    }
    return [value for value in canonical if value in owned]


def attachments_by_id(*, file_ids: object, include_deleted: bool = True) -> dict[str, Attachment]:
    """The attachments of these ids (those that still exist) by their id (one query).

    For showing what a stored message carried: ownership was checked when it was sent.
    """
    ids = [value for value in (canonical_file_id(v) for v in _as_list(file_ids)) if value is not None]
    if not ids:
        return {}
    rows = Attachment.objects.filter(pk__in=ids)
    if not include_deleted:
        rows = rows.filter(deleted_at__isnull=True)
    return {str(row.pk): row for row in rows}


def _as_list(value: object) -> list[object]:
    if isinstance(value, list | tuple | set):
        return list(value)
    return []


def message_attachments(rows: list[ChatMessage]) -> dict[str, Attachment]:
    """The attachments the rows' ``file_ids`` name, by id (one query for all of them)."""
    ids: list[object] = []
    for row in rows:
        ids.extend(_as_list(row.file_ids))
    return attachments_by_id(file_ids=ids)


def attachment_public(attachment: Attachment) -> dict[str, Any]:
    """An attachment as messages show it: the fields of the file API, plus ``deleted``."""
    return {
        "id": str(attachment.pk),
        "name": attachment.name,
        "mime_type": attachment.mime_type,
        "size_bytes": attachment.size_bytes,
        "sha256": attachment.sha256,
        "created_at": attachment.created_at.isoformat(),
        "deleted": attachment.deleted_at is not None,
    }


def row_attachments(row: ChatMessage, found: dict[str, Attachment]) -> list[dict[str, Any]]:
    """A row's attachments (``attachment_public``) in the order it carried them; files deleted
    for good are left out."""
    out = []
    for raw in _as_list(row.file_ids):
        attachment = found.get(canonical_file_id(raw) or "")
        if attachment is not None:
            out.append(attachment_public(attachment))
    return out


def session_list(*, user: User) -> QuerySet[ChatSession]:
    return ChatSession.objects.filter(user=user).order_by("-updated_at")


# ---------------------------------------------------------------- the transcript tree


@dataclass(frozen=True)
class Versions:
    """A message's place among its siblings (the versions of it): 1-based `position`,
    their `count`, and the `sequences` of all of them, oldest first."""

    position: int
    count: int
    sequences: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"position": self.position, "count": self.count, "sequences": list(self.sequences)}


@dataclass(frozen=True)
class Branch:
    """The session's tree in brief: the current branch (sequences, root first) and every
    row's children (sequences ascending; the key None holds the first rows)."""

    sequences: list[int]
    parents: dict[int, int | None]
    children: dict[int | None, list[int]]

    def versions(self, sequence: int) -> Versions | None:
        """The versions of the row `sequence`; None when it has no sibling."""
        if sequence not in self.parents:
            return None
        siblings = self.children.get(self.parents[sequence], [])
        if len(siblings) < 2:
            return None
        return Versions(position=siblings.index(sequence) + 1, count=len(siblings), sequences=list(siblings))

    def newest_leaf_under(self, sequence: int) -> int:
        """The most recently written row of the subtree under `sequence` (itself when it has
        no children): the branch switching to that version shows."""
        newest, stack = sequence, [sequence]
        while stack:
            node = stack.pop()
            newest = max(newest, node)
            stack.extend(self.children.get(node, []))
        return newest

    def on_branch(self, sequence: int | None) -> bool:
        return sequence is not None and sequence in self.sequences


def branch_get(*, session_id: uuid.UUID | str, leaf_sequence: int | None) -> Branch:
    """The session's tree (two integers per row, one query) and the branch ending at
    `leaf_sequence` (empty for None). Parents always have lower sequences than their
    children, so the walk up from the leaf ends."""
    pairs = list(ChatMessage.objects.filter(session__pk=session_id).values_list("sequence", "parent_sequence"))
    parents: dict[int, int | None] = dict(pairs)
    children: dict[int | None, list[int]] = {}
    for sequence, parent in sorted(pairs):
        children.setdefault(parent, []).append(sequence)
    path: list[int] = []
    node = leaf_sequence if leaf_sequence in parents else None
    while node is not None:
        path.append(node)
        parent = parents.get(node)
        node = parent if parent is not None and parent < node else None
    path.reverse()
    return Branch(sequences=path, parents=parents, children=children)


MAX_SEQUENCE = 2**31 - 1


def message_get(*, session_id: uuid.UUID | str, sequence: int) -> ChatMessage:
    """The session's row with this sequence, or MessageNotFound."""
    if not 0 <= sequence <= MAX_SEQUENCE:  # never a row, and past what the database's integer holds
        raise MessageNotFound(sequence)
    row = ChatMessage.objects.filter(session__pk=session_id, sequence=sequence).first()
    if row is None:
        raise MessageNotFound(sequence)
    return row


def edit_branch_point(*, session_id: uuid.UUID | str, sequence: int) -> int | None:
    """Where an edit of the user message `sequence` branches off: that message's parent
    (None for the first message). Only a user's own message can be edited."""
    row = message_get(session_id=session_id, sequence=sequence)
    if row.role != ChatMessage.Role.USER or row.kind != ChatMessage.Kind.MESSAGE:
        raise NotEditable("Only your own messages can be edited; regenerate an answer instead.")
    return row.parent_sequence


def regenerate_branch_point(*, session_id: uuid.UUID | str, sequence: int) -> int:
    """Where regenerating the answer that row `sequence` belongs to branches off: the row
    its first row follows (the user message it answers). An answer is every row of one
    turn that is not a user row; a row written without a turn id counts back to the
    nearest user message."""
    row = message_get(session_id=session_id, sequence=sequence)
    if row.role == ChatMessage.Role.USER:
        raise NotEditable("A message of yours is edited, not regenerated.")
    first: ChatMessage | None = row
    if row.turn_id is not None:
        first = (
            ChatMessage.objects.filter(session__pk=session_id, turn_id=row.turn_id)
            .exclude(role=ChatMessage.Role.USER)
            .order_by("sequence")
            .first()
        )
        anchor = first.parent_sequence if first is not None else None
    else:
        branch = branch_get(session_id=session_id, leaf_sequence=row.sequence)
        roles = dict(
            ChatMessage.objects.filter(session__pk=session_id, sequence__in=branch.sequences).values_list(
                "sequence", "role"
            )
        )
        anchor = next((s for s in reversed(branch.sequences) if roles.get(s) == ChatMessage.Role.USER), None)
    if anchor is None:
        raise NotEditable("This answer has no message of yours before it to answer again.")
    return anchor


def session_branch(*, session: ChatSession) -> Branch:
    return branch_get(session_id=session.pk, leaf_sequence=session.leaf_sequence)


def branch_rows(*, session_id: uuid.UUID | str, sequences: Sequence[int]) -> list[ChatMessage]:
    """The rows with these sequences, in sequence order."""
    if not sequences:
        return []
    return list(ChatMessage.objects.filter(session__pk=session_id, sequence__in=list(sequences)).order_by("sequence"))


@dataclass(frozen=True)
class MessagePage:
    messages: list[ChatMessage]
    has_more: bool
    branch: Branch | None = None

    @property
    def oldest_sequence(self) -> int | None:
        return self.messages[0].sequence if self.messages else None

    def versions(self, row: ChatMessage) -> dict[str, Any] | None:
        found = self.branch.versions(row.sequence) if self.branch is not None else None
        return found.as_dict() if found is not None else None

    def usage(self, row: ChatMessage, shares: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """The share of the user's limits the turn of this assistant row cost (None on other rows)."""
        if row.role != ChatMessage.Role.ASSISTANT or row.turn_id is None:
            return None
        return shares.get(str(row.turn_id))


def message_page(*, session: ChatSession, limit: int, before_sequence: int | None = None) -> MessagePage:
    """Newest-first page of the current branch's messages, returned in ascending order."""
    branch = session_branch(session=session)
    sequences = branch.sequences
    if before_sequence is not None:
        sequences = [s for s in sequences if s < before_sequence]
    has_more = len(sequences) > limit
    chosen = sequences[-limit:] if limit else []
    return MessagePage(messages=branch_rows(session_id=session.pk, sequences=chosen), has_more=has_more, branch=branch)


def session_messages(*, session_id: uuid.UUID | str, leaf_sequence: int | None) -> list[ChatMessage]:
    """Every row of the branch ending at `leaf_sequence`, root first (the turn engine's
    working list): the context the model sees is exactly the current branch."""
    branch = branch_get(session_id=session_id, leaf_sequence=leaf_sequence)
    return branch_rows(session_id=session_id, sequences=branch.sequences)


def session_branch_messages(*, session: ChatSession) -> list[ChatMessage]:
    """Every row of the session's current branch, root first: what the user sees, and what
    an export or a shared snapshot of the chat holds (never the other versions)."""
    return session_messages(session_id=session.pk, leaf_sequence=session.leaf_sequence)


def context_snapshot_get(*, session_id: uuid.UUID | str) -> ContextSnapshot | None:
    return ContextSnapshot.objects.filter(session__pk=session_id).first()


def memory_search(*, user: User, query: str = "", limit: int = 20) -> list[Memory]:
    """The user's memories, newest first; with a query, those containing any of its words."""
    rows = Memory.objects.filter(user=user)
    words = [word for word in query.split() if len(word) > 1][:10]
    if words:
        condition = Q()
        for word in words:
            condition |= Q(content__icontains=word)
        rows = rows.filter(condition)
    return list(rows.order_by("-created_at", "-pk")[:limit])


def message_search_for_user(*, user: User, query: str, limit: int = 10) -> list[ChatMessage]:
    """The user's own user/assistant rows containing ``query`` (system notices excluded), newest first."""
    return list(
        ChatMessage.objects.filter(
            session__user=user,
            role__in=[ChatMessage.Role.USER, ChatMessage.Role.ASSISTANT],
            content__icontains=query,
            kind=ChatMessage.Kind.MESSAGE,
        )
        .select_related("session")
        .order_by("-created_at", "-pk")[:limit]
    )


# ---------------------------------------------------------------- what each answer cost the user's limits


def _share(microdollars: int, limit: int) -> float | None:
    """The part of a window's limit, in percent to 0.01 (None: the window is unlimited)."""
    if limit <= 0:
        return None
    return round(100 * microdollars / limit, 2)


def turn_usage_shares(*, user_id: int, turn_ids: Iterable[object]) -> dict[str, dict[str, Any]]:
    """What each finished turn cost the user's limits, by turn id: ``{charged, outcome,
    daily_percent, weekly_percent}``, each percent the turn's recorded spend (its
    `TurnUsage.cost_microdollars`, what the spend counters were given) against the
    plan's daily or weekly limit as the usage API counts it (None: unlimited). Never
    dollars. A turn that spent nothing (a failure before any output, an unknown cost) is
    `charged: false` with 0 %. Running turns are left out. Two queries, or none."""
    ids = {str(turn_id) for turn_id in turn_ids if turn_id}
    if not ids:
        return {}
    turns = list(
        TurnUsage.objects.filter(turn_id__in=ids, user_id=user_id)
        .exclude(outcome=TurnUsage.Outcome.RUNNING)
        .values_list("turn_id", "cost_microdollars", "outcome")
    )
    if not turns:
        return {}
    from copilot_site.accounts.models import User
    from ratelimits.selectors import limits_resolve

    owner = User.objects.filter(pk=user_id).first()
    if owner is None:
        return {}
    limits = limits_resolve(user=owner)
    shares: dict[str, dict[str, Any]] = {}
    for turn_id, cost, outcome in turns:
        spent = max(cost or 0, 0)
        shares[str(turn_id)] = {
            "charged": spent > 0,
            "outcome": outcome,
            "daily_percent": _share(spent, limits.account_daily),
            "weekly_percent": _share(spent, limits.account_weekly),
        }
    return shares


# ---------------------------------------------------------------- tool approvals


def approval_status_get(*, approval_id: object) -> tuple[str, str] | None:
    """(status, the user's reason) of an approval; the waiting turn's poll (one indexed read)."""
    row = ToolApproval.objects.filter(pk=str(approval_id)).values_list("status", "decision_reason").first()
    return (row[0], row[1]) if row is not None else None


def approvals_pending(*, session: ChatSession, turn_id: str | None) -> list[ToolApproval]:
    """The tool calls of the running turn ``turn_id`` that wait for the user's answer, oldest
    first (none when no turn runs: a turn that died with one pending can no longer run it)."""
    if turn_id is None:
        return []
    rows = ToolApproval.objects.filter(session=session, turn_id=turn_id, status=ToolApproval.Status.PENDING)
    return list(rows.order_by("created_at"))


def approval_threshold_get(*, user: User) -> int | None:
    """The user's approval threshold in credit cents (None: not set)."""
    row = ToolApprovalThreshold.objects.filter(user=user).values_list("threshold_cents", flat=True).first()
    return int(row) if row is not None else None


# ---------------------------------------------------------------- the transcript as AI SDK UIMessages

TOOL_UNFINISHED_TEXT = "The tool did not finish."


@dataclass(frozen=True)
class UIMessagePage:
    messages: list[dict[str, Any]]
    has_more: bool
    oldest_sequence: int | None


def _file_part(file: dict[str, Any]) -> dict[str, Any]:
    """An attachment as an AI SDK ``file`` part; ``url`` downloads it (for its owner)."""
    return {
        "type": "file",
        "mediaType": file["mime_type"],
        "filename": file["name"],
        "url": f"/api/chat/files/{file['id']}/content",
    }


def _json_or_text(text: str | None) -> Any:
    if text is None:
        return ""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _tool_input(call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(arguments, str):
        return _json_or_text(arguments or "{}")
    return arguments if arguments is not None else {}


def _tool_name(call: Any) -> str:
    function = call.get("function") if isinstance(call, dict) else None
    return str(function.get("name") or "tool") if isinstance(function, dict) else "tool"


def _is_compaction_notice(row: ChatMessage) -> bool:
    calls = row.tool_calls or []
    return bool(calls) and not (row.content or "").strip() and all(_tool_name(c) == "context_compaction" for c in calls)


def _denied_approval(approval: ToolApproval) -> dict[str, Any]:
    reason = {
        ToolApproval.Status.EXPIRED: "Nobody answered in time.",
        ToolApproval.Status.CANCELLED: "The reply was stopped before anyone answered.",
    }.get(ToolApproval.Status(approval.status), approval.decision_reason)
    denied: dict[str, Any] = {"id": str(approval.pk), "approved": False}
    if reason:
        denied["reason"] = reason
    return denied


class _UIMessageBuilder:
    """Folds rows into UIMessages: every non-user row of one turn (and a follow-up the
    turn drained between its rounds) is one assistant message whose id is the turn id —
    the ``messageId`` of the ``start`` chunk that streamed it."""

    def __init__(
        self,
        *,
        skip_turn_id: str | None,
        branch: Branch | None = None,
        shares: dict[str, dict[str, Any]] | None = None,
        approvals: dict[tuple[str, str], ToolApproval] | None = None,
        attachments: dict[str, Attachment] | None = None,
    ) -> None:
        self.skip_turn_id = skip_turn_id
        self.branch = branch
        self.shares = shares or {}
        self.approvals = approvals or {}  # (turn id, tool call id) -> its approval
        self.attachments = attachments or {}
        self.out: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self.current_turn: str | None = None
        self.tools: dict[str, dict[str, Any]] = {}
        self.step_open = False  # a round's parts are open: its tool results not in yet

    def add(self, row: ChatMessage) -> None:
        turn = str(row.turn_id) if row.turn_id else None
        if row.role == ChatMessage.Role.USER:
            if self.current is not None and turn is not None and turn == self.current_turn:
                self._follow_up(row)
                return
            self._close()
            files = row_attachments(row, self.attachments)
            parts: list[dict[str, Any]] = (
                [{"type": "text", "text": row.content or ""}] if row.content or not files else []
            )
            parts.extend(_file_part(file) for file in files)
            metadata: dict[str, Any] = {"sequence": row.sequence, "createdAt": row.created_at.isoformat()}
            if files:
                metadata["attachments"] = files
            self.out.append(
                {
                    "id": row.client_message_id or f"user-{row.sequence}",
                    "role": "user",
                    "parts": parts,
                    "metadata": self._metadata(row, metadata),
                }
            )
            return
        if row.role not in (ChatMessage.Role.ASSISTANT, ChatMessage.Role.TOOL, ChatMessage.Role.REASONING):
            return
        if self.current is None or turn != self.current_turn:
            self._open(row, turn)
        assert self.current is not None
        if row.role != ChatMessage.Role.TOOL and row.kind == ChatMessage.Kind.MESSAGE and not self.step_open:
            if _is_compaction_notice(row):  # streamed before the first round, outside any step
                self._part(row, self.current)
                return
            self.current["parts"].append({"type": "step-start"})  # a model round begins, as `start-step` does
            self.step_open = True
        elif row.role == ChatMessage.Role.TOOL:
            self.step_open = False
        self._part(row, self.current)

    def _open(self, row: ChatMessage, turn: str | None) -> None:
        self._close()
        self.current_turn = turn
        self.current = {
            "id": turn or f"assistant-{row.sequence}",
            "role": "assistant",
            "parts": [],
            "metadata": self._metadata(
                row, {"sequence": row.sequence, "createdAt": row.created_at.isoformat(), "turnId": turn}
            ),
        }
        self.tools = {}
        self.step_open = False

    def _metadata(self, row: ChatMessage, metadata: dict[str, Any]) -> dict[str, Any]:
        versions = self.branch.versions(row.sequence) if self.branch is not None else None
        if versions is not None:
            metadata["versions"] = versions.as_dict()
        return metadata

    def _part(self, row: ChatMessage, message: dict[str, Any]) -> None:
        parts: list[dict[str, Any]] = message["parts"]
        metadata: dict[str, Any] = message["metadata"]
        content = row.content or ""
        if row.duration_ms:
            metadata["durationMs"] = row.duration_ms
        if row.role == ChatMessage.Role.ASSISTANT and row.model:
            metadata["model"], metadata["mode"] = row.model, row.mode
        if row.role == ChatMessage.Role.ASSISTANT and row.turn_id is not None and str(row.turn_id) in self.shares:
            metadata["usage"] = self.shares[str(row.turn_id)]
        if row.role == ChatMessage.Role.REASONING:
            if content.strip():
                parts.append({"type": "reasoning", "text": content, "state": "done"})
            return
        if row.role == ChatMessage.Role.TOOL:
            tool = self.tools.get(row.tool_call_id)
            if tool is None:  # a result without its call: still shown
                tool = {"type": f"tool-{row.name or 'tool'}", "toolCallId": row.tool_call_id or f"tool-{row.sequence}"}
                tool["input"] = {}
                parts.append(tool)
            tool.pop("errorText", None)
            approval = self.approvals.get((str(row.turn_id), row.tool_call_id))
            if approval is not None and not approval.is_approved:
                # Not run: the user denied it, nobody answered, or the turn stopped (AI SDK 6 state).
                tool["state"] = "output-denied"
                tool.pop("output", None)
                tool["approval"] = _denied_approval(approval)
                return
            tool["state"] = "output-available"
            tool["output"] = _json_or_text(row.content)
            if approval is not None:
                tool["approval"] = {"id": str(approval.pk), "approved": True}
            return
        if row.kind == ChatMessage.Kind.STOPPED:
            parts.append({"type": "data-stopped", "data": {"text": STOPPED_TEXT}})
            metadata["stopped"] = True
            return
        if row.kind == ChatMessage.Kind.ERROR_NOTICE:
            parts.append({"type": "data-notice", "data": {"kind": "error", "text": content}})
            metadata["error"] = True
            return
        if content.strip():
            parts.append({"type": "text", "text": content, "state": "done"})
        for call in row.tool_calls or []:
            call_id = str(call.get("id") or "") if isinstance(call, dict) else ""
            if not call_id:
                continue
            tool = {
                "type": f"tool-{_tool_name(call)}",
                "toolCallId": call_id,
                "state": "output-error",
                "input": _tool_input(call),
                "errorText": TOOL_UNFINISHED_TEXT,
            }
            parts.append(tool)
            self.tools[call_id] = tool

    def _follow_up(self, row: ChatMessage) -> None:
        assert self.current is not None
        parts: list[dict[str, Any]] = self.current["parts"]
        last = parts[-1] if parts else None
        files = row_attachments(row, self.attachments)
        if last is not None and last["type"] == "data-pending-drained":
            data = last["data"]
            data["messages"].append(row.content or "")
            data["count"] += 1
        else:
            data = {"count": 1, "messages": [row.content or ""]}
            parts.append({"type": "data-pending-drained", "data": data})
        if files or "attachments" in data:
            # Per message, as the live `data-pending-drained` chunk carries them.
            data.setdefault("attachments", [[] for _ in range(data["count"] - 1)]).append(files)

    def _close(self) -> None:
        message, self.current = self.current, None
        if message is None:
            return
        if self.skip_turn_id is not None and message["id"] == self.skip_turn_id:
            return  # the running turn: its stream (replayed from the start) brings the whole message
        if all(part["type"] == "step-start" for part in message["parts"]):
            return
        self.out.append(message)

    def result(self) -> list[dict[str, Any]]:
        self._close()
        return self.out


def _widened_to_turn_start(
    session: ChatSession, earlier_sequences: list[int], rows: list[ChatMessage]
) -> list[ChatMessage]:
    """`rows` with the branch rows before them that belong to the first row's turn (a row
    without a turn id that is not a user row: back to the user row it answers)."""
    first = rows[0]
    if first.turn_id is None and first.role == ChatMessage.Role.USER:
        return rows
    widened: list[ChatMessage] = []
    end = len(earlier_sequences)
    while end > 0:
        batch = branch_rows(session_id=session.pk, sequences=earlier_sequences[max(end - 200, 0) : end])
        end -= len(batch) or end
        for row in reversed(batch):
            if first.turn_id is not None and row.turn_id != first.turn_id:
                return list(reversed(widened)) + rows
            widened.append(row)
            if first.turn_id is None and row.role == ChatMessage.Role.USER:
                return list(reversed(widened)) + rows
    return list(reversed(widened)) + rows


def ui_message_page(
    *, session: ChatSession, limit: int, before_sequence: int | None = None, running_turn_id: str | None = None
) -> UIMessagePage:
    """A page of the current branch as AI SDK ``UIMessage`` dicts, oldest first.

    Paged by rows like `message_page` (``limit`` rows before ``before_sequence``), then
    widened back to the start of the turn its oldest row belongs to, so no message is
    cut in two across pages. ``running_turn_id``: the turn still streaming; its
    assistant message is left out (resuming its stream replays all of it), its user
    message stays. A message with other versions carries ``metadata.versions``
    (`{position, count, sequences}`; an assistant message: those of its first row).
    """
    branch = session_branch(session=session)
    sequences = branch.sequences
    if before_sequence is not None:
        sequences = [s for s in sequences if s < before_sequence]
    start = max(len(sequences) - limit, 0)
    rows = branch_rows(session_id=session.pk, sequences=sequences[start:])
    if rows and start > 0:
        rows = _widened_to_turn_start(session, sequences[:start], rows)
    oldest = rows[0].sequence if rows else None
    has_more = oldest is not None and sequences.index(oldest) > 0
    shares = turn_usage_shares(user_id=session.user_id, turn_ids={row.turn_id for row in rows})
    turn_ids = {row.turn_id for row in rows if row.turn_id is not None and row.role == ChatMessage.Role.TOOL}
    approvals = (
        {
            (str(a.turn_id), a.tool_call_id): a
            for a in ToolApproval.objects.filter(session=session, turn_id__in=turn_ids)
        }
        if turn_ids
        else {}
    )
    builder = _UIMessageBuilder(
        skip_turn_id=running_turn_id,
        branch=branch,
        shares=shares,
        approvals=approvals,
        attachments=message_attachments(rows),
    )
    for row in rows:
        builder.add(row)
    return UIMessagePage(messages=builder.result(), has_more=has_more, oldest_sequence=oldest)
