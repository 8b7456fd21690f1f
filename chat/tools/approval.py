"""Which tool calls ask the user first (human in the loop): the approval policy.

    reason = approval_reason(tool=tool, cost_cents=tool_cost_cents(tool), threshold_cents=threshold)
    if reason is not None: ...   # the turn asks and waits (chat/engine/approvals.py)

A call needs approval, for one of these reasons (checked in this order, the first one
is recorded on the approval):

- ``cost_over_threshold``: the tool is priced and one run costs more credit cents than
  the threshold the user set on the account page (`ToolApprovalThreshold`; no row: no
  threshold; 0: every priced tool asks). This holds whatever the other rules say.
- ``listed``: the tool's name is in ``COPILOT_TOOLS_REQUIRING_APPROVAL``.
- ``tool_policy``: the tool itself says so (``Tool.requires_approval``).

How another tool source plugs in: a tool whose source stores a per-tool policy (an MCP
server's tool marked "ask first" in its stored configuration, say) sets
``requires_approval = True`` on the `Tool` instance it builds, and the engine asks
with no change here. A source with a richer rule (ask only for some arguments, say)
registers a policy with `approval_policy_register`: a function of the same keyword
arguments as `approval_reason` plus ``arguments``, answering a reason or None. Policies
are asked after the built-in rules, in registration order; the first reason wins.

Nothing here does I/O: the caller reads the threshold once per turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from django.conf import settings

from .base import Tool

ApprovalReason = Literal["listed", "tool_policy", "cost_over_threshold"]
# (tool, cost_cents, threshold_cents, arguments) -> a reason or None
ApprovalPolicy = Callable[..., ApprovalReason | None]

_POLICIES: list[ApprovalPolicy] = []


def approval_policy_register(policy: ApprovalPolicy) -> ApprovalPolicy:
    """Add a policy (usable as a decorator); registering the same function twice adds it once."""
    if policy not in _POLICIES:
        _POLICIES.append(policy)
    return policy


def approval_policy_unregister(policy: ApprovalPolicy) -> None:
    if policy in _POLICIES:
        _POLICIES.remove(policy)


def tools_requiring_approval() -> frozenset[str]:
    names = settings.COPILOT_TOOLS_REQUIRING_APPROVAL or []
    return frozenset(str(name) for name in names)


def approval_reason(
    *, tool: Tool, cost_cents: int, threshold_cents: int | None, arguments: Mapping[str, Any] | None = None
) -> ApprovalReason | None:
    """Why this call must wait for the user's answer, or None when it runs at once.

    ``cost_cents`` is the tool's price for one run (`tool_cost_cents`);
    ``threshold_cents`` the user's threshold (None: not set).
    """
    if threshold_cents is not None and cost_cents > 0 and cost_cents > threshold_cents:
        return "cost_over_threshold"
    if tool.name in tools_requiring_approval():
        return "listed"
    if tool.requires_approval:
        return "tool_policy"
    for policy in _POLICIES:
        reason = policy(tool=tool, cost_cents=cost_cents, threshold_cents=threshold_cents, arguments=arguments or {})
        if reason is not None:
            return reason
    return None
