"""Running one tool call: credit pre-check, time cap, cancellation, output limits, charging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.errors import InsufficientCredits

from .base import Tool, ToolContext, ToolError, ToolImage, ToolOutput, ToolResultWithImages, validate_arguments
from .registry import tool_cost_cents

logger = logging.getLogger(__name__)

TOOL_CHARGE_REASON = "copilot_tool_execution"


class ToolCancelled(Exception):
    """The turn was stopped while the tool ran."""


@dataclass(frozen=True)
class ToolRunResult:
    """``output`` goes on the wire (str or JSON value); ``text`` is the tool row's content;
    ``images`` go to the model as image parts where the provider takes them."""

    output: Any
    text: str
    success: bool
    images: tuple[ToolImage, ...] = ()


def _cap_seconds() -> float:
    return float(settings.COPILOT_MAX_TOOL_WAIT_S)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def timeout_text(name: str) -> str:
    cap = _format_seconds(_cap_seconds())
    return (
        f"Tool '{name}' exceeded the {cap}s single-tool wait cap and was cancelled. Long-running work should go "
        "through run_sub_session — it uses async start+poll so nothing blocks the chat stream."
    )


def truncate_output(text: str) -> str:
    """Cut text over ``COPILOT_TOOL_OUTPUT_MAX_CHARS``; the note counts towards the limit."""
    limit = int(settings.COPILOT_TOOL_OUTPUT_MAX_CHARS)
    if len(text) <= limit:
        return text
    kept = limit
    for _ in range(3):  # the note's length depends on the number it shows
        note = f"\n\n[Output truncated: {len(text)} characters, showing the first {kept}.]"
        kept = max(0, limit - len(note))
    note = f"\n\n[Output truncated: {len(text)} characters, showing the first {kept}.]"
    return text[:kept] + note


def failed(text: str) -> ToolRunResult:
    text = truncate_output(text)
    return ToolRunResult(output=text, text=text, success=False)


def succeeded(output: ToolOutput) -> ToolRunResult:
    """Strings pass through; objects are JSON for the row, and stay objects on the wire unless cut."""
    if isinstance(output, ToolResultWithImages):
        return replace(succeeded(output.output), images=output.images)
    if isinstance(output, str):
        text = truncate_output(output)
        return ToolRunResult(output=text, text=text, success=True)
    serialised = json.dumps(output, ensure_ascii=False, default=str)
    text = truncate_output(serialised)
    wire: Any = output if text == serialised else text
    return ToolRunResult(output=wire, text=text, success=True)


async def charge_tool_run(*, tool: Tool, ctx: ToolContext, cost_cents: int, input_keys: list[str]) -> bool:
    """Charge one completed run of a paid tool, once. Never raises.

    The idempotency key ``tool:{turn_id}:{tool_call_id}`` makes a repeated charge
    (a redelivered turn, a retry) a no-op in the ledger. A failed charge never
    fails the tool: it is logged as a BILLING_LEAK for operators to reconcile.
    """
    if cost_cents <= 0 or not settings.ENABLE_CREDIT or ctx.user is None:
        return False
    try:
        await sync_to_async(billing_services.credits_spend)(
            user=ctx.user,
            amount_cents=cost_cents,
            idempotency_key=f"tool:{ctx.turn_id}:{ctx.tool_call_id}",
            reason=TOOL_CHARGE_REASON,
            metadata={
                "reason": TOOL_CHARGE_REASON,
                "tool": tool.name,
                "session_id": ctx.session_id,
                "tool_call_id": ctx.tool_call_id,
                "input_keys": input_keys,
            },
        )
    except Exception as exc:
        kind = "INSUFFICIENT_BALANCE" if isinstance(exc, InsufficientCredits) else "UNEXPECTED_ERROR"
        logger.error(
            "BILLING_LEAK[%s]: tool executed but credit charge failed — user_id=%s, tool=%s, tool_call_id=%s, "
            "cost=%s: %s",
            kind,
            getattr(ctx.user, "pk", None),
            tool.name,
            ctx.tool_call_id,
            cost_cents,
            exc,
            extra={
                "billing_leak": True,
                "leak_kind": kind,
                "user_id": getattr(ctx.user, "pk", None),
                "tool": tool.name,
                "tool_call_id": ctx.tool_call_id,
                "cost_cents": cost_cents,
            },
        )
        return False
    return True


async def _has_credit_for(ctx: ToolContext, cost_cents: int) -> bool:
    if cost_cents <= 0 or not settings.ENABLE_CREDIT:
        return True
    if ctx.user is None:
        return False
    balance = await sync_to_async(billing_selectors.credit_balance)(user=ctx.user)
    return balance >= cost_cents


async def _run_capped(tool: Tool, ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutput:
    """Run the tool until it returns, the cap passes (TimeoutError) or the turn stops (ToolCancelled)."""
    if ctx.is_cancelled:
        raise ToolCancelled
    task: asyncio.Future[ToolOutput] = asyncio.ensure_future(tool.run(ctx, **arguments))
    waiters: set[asyncio.Future[Any]] = {task}
    cancel_wait: asyncio.Future[Any] | None = None
    if ctx.cancel is not None:
        cancel_wait = asyncio.ensure_future(ctx.cancel.wait())
        waiters.add(cancel_wait)
    try:
        done, _ = await asyncio.wait(waiters, timeout=_cap_seconds(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if cancel_wait is not None:
            cancel_wait.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task in done:
        return task.result()
    if cancel_wait is not None and cancel_wait in done:
        raise ToolCancelled
    raise TimeoutError


async def tool_preflight(
    *, tool: Tool | None, name: str, arguments: dict[str, Any], ctx: ToolContext
) -> ToolRunResult | None:
    """The failed output of a call that cannot run (unknown tool, invalid arguments, not
    enough credits), or None when it can. `execute_tool` starts with it; the engine also
    asks it before it asks the user to approve a call, so nobody approves a doomed call."""
    if tool is None:
        return failed(f"Tool execution error: unknown tool '{name}'")
    try:
        validate_arguments(tool.parameters, arguments)
    except ToolError as exc:
        return failed(f"Tool execution error: {exc}")
    if not await _has_credit_for(ctx, tool_cost_cents(tool)):
        return failed(f"Insufficient credits to run {name}.")
    return None


async def execute_tool(*, tool: Tool | None, name: str, arguments: dict[str, Any], ctx: ToolContext) -> ToolRunResult:
    """One tool call, start to end. Every failure becomes a failed output, never an exception
    (except the caller's own cancellation)."""
    refused = await tool_preflight(tool=tool, name=name, arguments=arguments, ctx=ctx)
    if refused is not None:
        return refused
    assert tool is not None  # the preflight refuses an unknown tool
    checked = validate_arguments(tool.parameters, arguments)
    cost = tool_cost_cents(tool)

    input_keys = sorted(arguments)
    produced = False
    charge_handled = False
    try:
        try:
            output = await _run_capped(tool, ctx, checked)
        except TimeoutError:
            logger.warning(
                "copilot_tool_timeout tool=%s input_keys=%s user=%s session=%s cap_s=%s",
                name,
                input_keys,
                getattr(ctx.user, "pk", None),
                ctx.session_id,
                _format_seconds(_cap_seconds()),
            )
            return failed(timeout_text(name))
        except ToolCancelled:
            return failed(f"Tool '{name}' was cancelled because the turn was stopped.")
        except ToolError as exc:
            return failed(f"Tool execution error: {exc}")
        except Exception as exc:
            logger.warning("Tool %s raised", name, exc_info=True)
            return failed(f"Tool execution error: {str(exc) or type(exc).__name__}")
        produced = True
        return succeeded(output)
    finally:
        # Set the flag before awaiting: a cancellation that lands during the charge
        # must not make another path charge again; shield lets the charge finish.
        if produced and cost > 0 and not charge_handled:
            charge_handled = True
            await asyncio.shield(charge_tool_run(tool=tool, ctx=ctx, cost_cents=cost, input_keys=input_keys))
