"""A tool call that waits for the user's answer (human in the loop), on the worker's loop.

    gate = ApprovalGate(session_id=…, turn_id=…, cancel=hooks.cancel, keepalive=hooks.keepalive)
    approval = await gate.request(call_id=…, tool_name=…, arguments=…, reason=…, cost_cents=…)
    # stream ToolApprovalRequestEvent(approval.id, call_id), then:
    decision = await gate.wait(approval.id)

Durable: the pending approval is a `ToolApproval` row, written before the
``tool-approval-request`` chunk is streamed, so the user may close the tab and answer
from any device and any web process (`GET /api/chat/sessions/{id}` lists it, a resumed
stream replays the chunk). The turn reads the row's status every
``COPILOT_APPROVAL_POLL_S`` (0.25 s) in a worker thread that holds a database
connection only for that one read; between reads it awaits the turn's cancel event, so
the wait never blocks the other turns of the worker's shared event loop, and a stop
ends it at once (the supervisor sets the event within 0.5 s of the stop request). The
deadline (``COPILOT_APPROVAL_TIMEOUT_S``, 600 s) is stored on the row and enforced by
the same conditional update as a decision: whichever lands first wins.

While it waits the turn tells the runtime it is alive (``keepalive``), so the stream
idle timeout does not end a turn that is only waiting for its user.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from chat.models import ToolApproval
from chat.selectors import approval_status_get
from chat.services.approvals import approval_close, approval_request_create, approvals_close_for_turn
from copilot_site.core.sql import connection_released

STOPPED_REASON = "The reply was stopped before anyone answered."


@dataclass(frozen=True)
class ApprovalDecision:
    """How the wait ended: ``status`` is approved, denied, expired or cancelled."""

    status: str
    reason: str = ""

    @property
    def approved(self) -> bool:
        return self.status == ToolApproval.Status.APPROVED


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def denial_text(tool_name: str, decision: ApprovalDecision) -> str:
    """The tool result the model reads for a call that did not run."""
    if decision.status == ToolApproval.Status.EXPIRED:
        seconds = _format_seconds(float(settings.COPILOT_APPROVAL_TIMEOUT_S))
        return (
            f"The user did not answer the request to run tool '{tool_name}' within {seconds} seconds, "
            "so it was not run. Treat it as denied."
        )
    if decision.status == ToolApproval.Status.CANCELLED:
        return f"Tool '{tool_name}' was not run: the user stopped the reply before answering."
    text = f"The user denied running tool '{tool_name}'; it was not run."
    if decision.reason.strip():
        text += f" Their reason: {decision.reason.strip()}"
    return text


def denial_reason_shown(decision: ApprovalDecision) -> str:
    """The reason the transcript shows on a denied call (`approval.reason` of the UI part)."""
    if decision.status == ToolApproval.Status.EXPIRED:
        return "Nobody answered in time."
    if decision.status == ToolApproval.Status.CANCELLED:
        return STOPPED_REASON
    return decision.reason


class ApprovalGate:
    """The approvals of one turn. See the module docstring."""

    def __init__(
        self,
        *,
        session_id: str,
        turn_id: str,
        cancel: asyncio.Event,
        keepalive: Callable[[], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.turn_id = turn_id
        self.cancel = cancel
        self.keepalive = keepalive
        self.requested = False  # any approval asked for in this turn (the cleanup then closes them)

    async def request(
        self, *, call_id: str, tool_name: str, arguments: dict[str, Any], reason: str, cost_cents: int
    ) -> ToolApproval:
        self.requested = True
        return await sync_to_async(connection_released(approval_request_create), thread_sensitive=False)(
            session_id=self.session_id,
            turn_id=self.turn_id,
            tool_call_id=call_id,
            tool_name=tool_name,
            arguments=arguments,
            reason=reason,
            cost_cents=cost_cents,
            timeout_s=float(settings.COPILOT_APPROVAL_TIMEOUT_S),
        )

    async def wait(self, approval: ToolApproval) -> ApprovalDecision:
        """Until the user answers, the deadline passes or the turn is stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, (approval.expires_at - approval.created_at).total_seconds())
        poll = max(0.05, float(settings.COPILOT_APPROVAL_POLL_S))
        read = sync_to_async(connection_released(approval_status_get), thread_sensitive=False)
        while True:
            if self.cancel.is_set():
                return await self._close(approval, ToolApproval.Status.CANCELLED)
            found = await read(approval_id=approval.pk)
            if found is None:  # the chat was deleted under the turn
                return ApprovalDecision(ToolApproval.Status.CANCELLED)
            status, reason = found
            if status != ToolApproval.Status.PENDING:
                return ApprovalDecision(status, reason)
            left = deadline - loop.time()
            if left <= 0:
                return await self._close(approval, ToolApproval.Status.EXPIRED)
            if self.keepalive is not None:
                self.keepalive()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.cancel.wait(), timeout=min(poll, left))

    async def close_all(self) -> None:
        """End whatever this turn left pending (a time limit interrupted the wait, say)."""
        if self.requested:
            await sync_to_async(connection_released(approvals_close_for_turn), thread_sensitive=False)(
                turn_id=self.turn_id
            )

    async def _close(self, approval: ToolApproval, status: str) -> ApprovalDecision:
        # Shielded: a stop that interrupts the turn here must still end the row, or the
        # page would keep offering Approve / Deny for a call that can no longer run.
        row = await asyncio.shield(
            sync_to_async(connection_released(approval_close), thread_sensitive=False)(
                approval_id=approval.pk, status=status
            )
        )
        return ApprovalDecision(row.status, row.decision_reason)
