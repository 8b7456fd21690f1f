"""Writes of tool approvals (human in the loop) and of the user's approval threshold.

Every change of an approval is one conditional UPDATE from ``pending``: whichever
comes first (the user's decision, the deadline, a stop) wins, on SQLite and
PostgreSQL alike, and the others see the final row. The waiting turn reads the row
(`chat.engine.approvals`), so a decision taken on any device, through any web
process, reaches it.
"""

from __future__ import annotations

import datetime
import uuid
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from chat.errors import ApprovalAlreadyDecided, ApprovalNotFound
from chat.models import ToolApproval, ToolApprovalThreshold

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

DECISION_REASON_MAX_CHARS = 1000


def approval_request_create(
    *,
    session_id: str,
    turn_id: str,
    tool_call_id: str,
    tool_name: str,
    arguments: dict[str, Any],
    reason: str,
    cost_cents: int,
    timeout_s: float,
) -> ToolApproval:
    """The pending approval of one tool call; it expires ``timeout_s`` from now."""
    return ToolApproval.objects.create(
        session_id=session_id,
        turn_id=turn_id,
        tool_call_id=tool_call_id,
        tool_name=tool_name,
        input=arguments,
        reason=reason,
        cost_cents=max(0, cost_cents),
        expires_at=timezone.now() + datetime.timedelta(seconds=timeout_s),
    )


def _parse_id(approval_id: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(approval_id))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ApprovalNotFound(approval_id) from exc


@transaction.atomic
def approval_decide(
    *, user: User, session_id: object, approval_id: object, approved: bool, reason: str = ""
) -> ToolApproval:
    """The user's Approve / Deny of a waiting tool call.

    ApprovalNotFound (404) when the approval is not in this user's chat (another user's
    is the same answer); ApprovalAlreadyDecided (409) when it is no longer pending or
    its deadline has passed (the worker is about to expire it: the deadline is final).
    """
    pk = _parse_id(approval_id)
    mine = ToolApproval.objects.filter(pk=pk, session__pk=str(session_id), session__user=user)
    now = timezone.now()
    status = ToolApproval.Status.APPROVED if approved else ToolApproval.Status.DENIED
    updated = mine.filter(status=ToolApproval.Status.PENDING, expires_at__gt=now).update(
        status=status, decision_reason=(reason or "")[:DECISION_REASON_MAX_CHARS], decided_at=now
    )
    row = mine.first()
    if row is None:
        raise ApprovalNotFound(approval_id)
    if not updated:
        raise ApprovalAlreadyDecided(row.status if row.status != ToolApproval.Status.PENDING else "expired")
    return row


def approval_close(*, approval_id: object, status: str) -> ToolApproval:
    """End a still-pending approval as ``expired`` or ``cancelled``; the final row either way
    (a decision that landed first stays)."""
    pk = _parse_id(approval_id)
    ToolApproval.objects.filter(pk=pk, status=ToolApproval.Status.PENDING).update(
        status=status, decided_at=timezone.now()
    )
    return ToolApproval.objects.get(pk=pk)


def approvals_close_for_turn(*, turn_id: object, status: str = ToolApproval.Status.CANCELLED) -> int:
    """End every approval a turn left pending (its worker died, or it ended another way)."""
    return ToolApproval.objects.filter(turn_id=str(turn_id), status=ToolApproval.Status.PENDING).update(
        status=status, decided_at=timezone.now()
    )


def approval_threshold_set(*, user: User, threshold_cents: int | None) -> ToolApprovalThreshold | None:
    """Set (or with None remove) the user's threshold: a priced tool costing more asks first."""
    if threshold_cents is None:
        ToolApprovalThreshold.objects.filter(user=user).delete()
        return None
    row, _ = ToolApprovalThreshold.objects.update_or_create(
        user=user, defaults={"threshold_cents": max(0, int(threshold_cents))}
    )
    return row
