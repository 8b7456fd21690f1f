from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from .errors import SessionNotFound
from .models import (
    STOPPED_TEXT,
    ChatMessage,
    ChatSession,
    ContextSnapshot,
    Memory,
    ToolApproval,
    ToolApprovalThreshold,
)

if TYPE_CHECKING:
    from copilot_site.accounts.models import User


def session_get_for_user(*, session_id: uuid.UUID | str, user: User) -> ChatSession:
    """The user's session, or SessionNotFound — identical for missing and foreign ids."""
    try:
        return ChatSession.objects.get(pk=session_id, user=user)
    except (ChatSession.DoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise SessionNotFound(session_id) from exc


def session_list(*, user: User) -> QuerySet[ChatSession]:
    return ChatSession.objects.filter(user=user).order_by("-updated_at")


@dataclass(frozen=True)
class MessagePage:
    messages: list[ChatMessage]
    has_more: bool

    @property
    def oldest_sequence(self) -> int | None:
        return self.messages[0].sequence if self.messages else None


def message_page(*, session: ChatSession, limit: int, before_sequence: int | None = None) -> MessagePage:
    """Newest-first page of a session's messages, returned in ascending order."""
    rows = ChatMessage.objects.filter(session=session, session__user=session.user_id)
    if before_sequence is not None:
        rows = rows.filter(sequence__lt=before_sequence)
    page = list(rows.order_by("-sequence")[: limit + 1])
    has_more = len(page) > limit
    return MessagePage(messages=list(reversed(page[:limit])), has_more=has_more)


def session_messages(*, session_id: uuid.UUID | str) -> list[ChatMessage]:
    """Every row of a session in sequence order (the turn engine's working list)."""
    return list(ChatMessage.objects.filter(session__pk=session_id).order_by("sequence"))


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
        self, *, skip_turn_id: str | None, approvals: dict[tuple[str, str], ToolApproval] | None = None
    ) -> None:
        self.skip_turn_id = skip_turn_id
        self.approvals = approvals or {}  # (turn id, tool call id) -> its approval
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
            self.out.append(
                {
                    "id": row.client_message_id or f"user-{row.sequence}",
                    "role": "user",
                    "parts": [{"type": "text", "text": row.content or ""}],
                    "metadata": {"sequence": row.sequence, "createdAt": row.created_at.isoformat()},
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
            "metadata": {"sequence": row.sequence, "createdAt": row.created_at.isoformat(), "turnId": turn},
        }
        self.tools = {}
        self.step_open = False

    def _part(self, row: ChatMessage, message: dict[str, Any]) -> None:
        parts: list[dict[str, Any]] = message["parts"]
        metadata: dict[str, Any] = message["metadata"]
        content = row.content or ""
        if row.duration_ms:
            metadata["durationMs"] = row.duration_ms
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
        if last is not None and last["type"] == "data-pending-drained":
            last["data"]["messages"].append(row.content or "")
            last["data"]["count"] += 1
        else:
            parts.append({"type": "data-pending-drained", "data": {"count": 1, "messages": [row.content or ""]}})

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


def ui_message_page(
    *, session: ChatSession, limit: int, before_sequence: int | None = None, running_turn_id: str | None = None
) -> UIMessagePage:
    """A page of the transcript as AI SDK ``UIMessage`` dicts, oldest first.

    Paged by rows like `message_page` (``limit`` rows before ``before_sequence``), then
    widened back to the start of the turn its oldest row belongs to, so no message is
    cut in two across pages. ``running_turn_id``: the turn still streaming; its
    assistant message is left out (resuming its stream replays all of it), its user
    message stays.
    """
    page = message_page(session=session, limit=limit, before_sequence=before_sequence)
    rows = page.messages
    if rows:
        first = rows[0]
        if first.turn_id is not None:
            start = (
                ChatMessage.objects.filter(session=session, turn_id=first.turn_id, sequence__lt=first.sequence)
                .order_by("sequence")
                .values_list("sequence", flat=True)
                .first()
            )
        elif first.role != ChatMessage.Role.USER:
            start = (
                ChatMessage.objects.filter(session=session, role=ChatMessage.Role.USER, sequence__lt=first.sequence)
                .order_by("-sequence")
                .values_list("sequence", flat=True)
                .first()
            )
        else:
            start = None
        if start is not None:
            earlier = ChatMessage.objects.filter(session=session, sequence__gte=start, sequence__lt=first.sequence)
            rows = list(earlier.order_by("sequence")) + rows
    oldest = rows[0].sequence if rows else None
    has_more = oldest is not None and ChatMessage.objects.filter(session=session, sequence__lt=oldest).exists()
    turn_ids = {row.turn_id for row in rows if row.turn_id is not None and row.role == ChatMessage.Role.TOOL}
    approvals = (
        {
            (str(a.turn_id), a.tool_call_id): a
            for a in ToolApproval.objects.filter(session=session, turn_id__in=turn_ids)
        }
        if turn_ids
        else {}
    )
    builder = _UIMessageBuilder(skip_turn_id=running_turn_id, approvals=approvals)
    for row in rows:
        builder.add(row)
    return UIMessagePage(messages=builder.result(), has_more=has_more, oldest_sequence=oldest)
