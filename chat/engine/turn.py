"""The turn engine: one chat turn as an async generator of stream events.

    stream = run_turn(request, hooks)     # a TurnRequest and the worker's TurnHooks
    try:
        async for event in stream:
            publish(event.to_wire())
    finally:
        await stream.aclose()   # a stop: the engine's cleanup persists partial output

Dispatch has already saved the user's message, and the worker holds the
session's stream lock for the whole turn. Everything shown live is persisted, in
order, by the time ``finish`` is yielded: the rows and their writes are the
transcript's (``transcript.py``), follow-ups drained during the turn are
``followups.FollowUpDrain``'s; this module streams the rounds and runs the tools.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings

from chat.mcp.tools import mcp_turn_tools
from chat.models import ChatMessage
from chat.selectors import row_attachments
from chat.services import usage as usage_services
from chat.services.turns import ANSWER_NOT_SAVED_CODE, ANSWER_NOT_SAVED_TEXT, turn_unsaved_mark
from chat.tools import (
    Tool,
    ToolContext,
    ToolRunResult,
    approval_reason,
    enabled_tools,
    execute_tool,
    tool_cost_cents,
    tool_preflight,
    tool_schemas,
)
from copilot_site.core import metrics
from copilot_site.core.sql import connection_released

from .approvals import ApprovalGate, denial_text
from .attachments import IMAGE_IDS_KEY, attach_image_parts, carried, user_llm_message
from .context import (
    CONTEXT_COMPACTION_OUTPUT,
    CONTEXT_COMPACTION_TOOL,
    SUMMARY_SYSTEM_PROMPT,
    Compaction,
    budget_tokens,
    compact_history,
    estimate_tokens,
    for_request,
    history_messages,
    merge_consecutive,
    page_context_suffix,
    summary_transcript,
    system_prompt,
)
from .events import (
    ERROR_LLM,
    ERROR_TOOL_ROUND_LIMIT,
    DataErrorEvent,
    DataEvent,
    ErrorEvent,
    FinishEvent,
    FinishStepEvent,
    StartEvent,
    StartStepEvent,
    StreamEvent,
    TextDeltaEvent,
    TextEndEvent,
    TextStartEvent,
    ToolApprovalRequestEvent,
    ToolInputAvailableEvent,
    ToolInputStartEvent,
    ToolOutputAvailableEvent,
    ToolOutputDeniedEvent,
)
from .failures import failure_text
from .followups import FollowUpDrain
from .providers import (
    AssistantExtraDelta,
    LLMMessage,
    LLMProvider,
    ProviderDelta,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
    get_provider,
    reasoning_budget_for,
)
from .request import TurnHooks, TurnRequest
from .toolcalls import ToolCallDraft, tool_call_add_delta, tool_calls_finished, tool_calls_stored
from .transcript import Transcript, TurnEnd, TurnNotSaved, TurnRecorded
from .usage import UsageTotals, turn_spent_microdollars

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

FALLBACK_TEXT = "(Done — no further commentary.)"
TURN_COST_CAP_TEXT = (
    "This reply was stopped because it reached the per-reply spending limit of your plan. "
    "What it produced so far is saved; ask a narrower follow-up to continue."
)
ERROR_TURN_COST_CAP = "turn_cost_cap"


class _Stopped(Exception):
    """The turn's cancel event was set: finish as a user stop."""


class _RoundLimit(Exception):
    """COPILOT_MAX_TOOL_ROUNDS rounds ended in tool calls, none in an answer."""


class _CostCapReached(Exception):
    """The turn's spend reached the per-turn cap of the user's plan."""


def resolve_model(model: str | None) -> str:
    """``advanced`` → COPILOT_ADVANCED_MODEL; ``standard`` or nothing → COPILOT_MODEL."""
    return str(settings.COPILOT_ADVANCED_MODEL if model == "advanced" else settings.COPILOT_MODEL)


def run_turn(request: TurnRequest, hooks: TurnHooks) -> AsyncGenerator[StreamEvent, None]:
    """The turn's event stream. See the module docstring.

    ``hooks.cancel``: set it to stop the turn from outside; closing the generator
    with ``aclose()`` also stops it. ``hooks.drain_pending`` is called at turn start
    and at each tool-round boundary (see `TurnHooks`). The provider is
    ``get_provider()``, closed by the engine. A turn that ends without an error
    records its wall time from ``request.claimed_at`` on its last assistant row, in
    the same write as the row; a turn that spent and pushed one of the user's
    windows past 80 % ends with ``data-usage-warning``.
    """
    return _TurnRunner(request, hooks).run()


class _TurnRunner:
    def __init__(self, request: TurnRequest, hooks: TurnHooks) -> None:
        self.request = request
        self.session_id = request.session_id
        self.turn_id = request.turn_id
        self.model = resolve_model(request.model)
        self.cancel = hooks.cancel
        # The assistant message's id on the wire is the turn id, so the saved transcript
        # (`chat.selectors.ui_message_page`) can give each turn's message the same id.
        self.message_id = str(request.turn_id)
        self.log_prefix = f"[session {self.session_id} turn {self.turn_id}]"
        self.transcript = Transcript(session_id=self.session_id, turn_id=self.turn_id, log_prefix=self.log_prefix)
        self.transcript.model_choice = "advanced" if request.model == "advanced" else "standard"
        self.transcript.mode_choice = str(request.mode or settings.COPILOT_DEFAULT_MODE)
        self.followups = FollowUpDrain(self.transcript, hooks, log_prefix=self.log_prefix)
        self._provider: LLMProvider | None = None
        self.provider_name = ""
        self.user: User | None = None  # the session's owner, once loaded
        self.cost_cap_microdollars = 0
        self.approval_threshold_cents: int | None = None  # the user's, once loaded
        self.approvals = ApprovalGate(
            session_id=self.session_id, turn_id=self.turn_id, cancel=hooks.cancel, keepalive=hooks.keepalive
        )
        self.llm_messages: list[LLMMessage] = []
        self.tools: dict[str, Tool] = {}
        self.tool_schemas: list[dict[str, Any]] = []
        self.usage = UsageTotals()
        self.partial_text: list[str] | None = None  # the open round's text, until it is in a row
        self.produced_text: list[str] = []  # every text/reasoning/argument piece (for estimates)
        self.tools_ran = False
        self.text_after_last_tool = False
        self.compaction: Compaction | None = None
        self.error_text: str | None = None
        self.error_code = ERROR_LLM
        self.stopped = False
        self.setup_done = False
        self.recorded = TurnRecorded()

    @property
    def provider(self) -> LLMProvider:
        if self._provider is None:
            self._provider = get_provider()
        return self._provider

    # ------------------------------------------------------------------ the turn

    async def run(self) -> AsyncGenerator[StreamEvent, None]:
        try:
            await self._setup()
            yield StartEvent(message_id=self.message_id, session_id=self.session_id)
            attached = self._current_attachments_event()
            if attached is not None:
                yield attached
            for event in await self._prepare_context():
                yield event
            budget = reasoning_budget_for(mode=self.request.mode, model=self.model)
            emitter, cancel, usage = self.transcript.emitter, self.cancel, self.usage
            for _ in range(int(settings.COPILOT_MAX_TOOL_ROUNDS)):
                if cancel.is_set():
                    raise _Stopped
                await self._attach_images()
                # ---- one LLM round, streamed (inline: this loop is the hot path)
                yield StartStepEvent()
                text_id = str(uuid.uuid4())
                text_started = False
                parts: list[str] = []
                self.partial_text = parts
                drafts: dict[int, ToolCallDraft] = {}
                extras: dict[str, Any] = {}
                round_error: Exception | None = None
                stream = self._stream_round(budget)
                try:
                    async for delta in stream:
                        if cancel.is_set():
                            raise _Stopped
                        if isinstance(delta, TextDelta):
                            if emitter.is_open:
                                for event in emitter.close():
                                    yield event
                            if not text_started:
                                text_started = True
                                yield TextStartEvent(id=text_id)
                            parts.append(delta.text)
                            yield TextDeltaEvent(id=text_id, delta=delta.text)
                        elif isinstance(delta, ReasoningDelta):
                            self.produced_text.append(delta.text)
                            for event in emitter.delta(delta.text):
                                yield event
                        elif isinstance(delta, ToolCallDelta):
                            if emitter.is_open:
                                for event in emitter.close():
                                    yield event
                            tool_call_add_delta(drafts, delta)
                        elif isinstance(delta, UsageDelta):
                            usage.add(delta)
                        elif isinstance(delta, AssistantExtraDelta):
                            extras.update(delta.fields)
                except Exception as exc:  # incl. _Stopped; GeneratorExit/CancelledError pass through
                    round_error = exc
                finally:
                    await stream.aclose()
                for event in self._step_end(text_id if text_started else None):
                    yield event
                if round_error is not None:
                    raise round_error
                round_text, calls = self._round_end(parts, drafts)
                if not calls:
                    break
                async with aclosing(self._run_tools(round_text, calls, extras)) as tool_events:
                    async for event in tool_events:
                        yield event
                if self._over_cost_cap():
                    raise _CostCapReached
            else:
                raise _RoundLimit
            for event in self._answer_end():
                yield event
        except (GeneratorExit, asyncio.CancelledError):
            self.stopped = True  # aclose() or task cancellation: a stop
            raise
        except Exception as exc:
            self._ended_by(exc)
        finally:
            await self._cleanup()
        # Never yield inside the finally: during aclose() that raises RuntimeError.
        for event in self._closing_events():
            yield event

    async def _attach_images(self) -> None:
        """Turn image markers (the current turn's, and a follow-up's drained at a boundary)
        into image parts, or drop them for a text-only model (`attachments.attach_image_parts`)."""
        if not any(message.get(IMAGE_IDS_KEY) for message in self.llm_messages):
            return
        resolved = await sync_to_async(connection_released(attach_image_parts))(
            self.llm_messages, model=self.model, provider=self.provider_name
        )
        self.llm_messages[:] = resolved

    def _stream_round(self, budget: int) -> AsyncGenerator[ProviderDelta, None]:
        messages = for_request(self.llm_messages)
        return self.provider.stream_round(
            messages=messages, tools=self.tool_schemas, model=self.model, reasoning_budget=budget
        )

    def _step_end(self, open_text_id: str | None) -> list[StreamEvent]:
        """A round's closing events, in this order on every path that may still yield:
        reasoning-end, text-end, finish-step."""
        events = self.transcript.emitter.close()
        if open_text_id is not None:
            events.append(TextEndEvent(id=open_text_id))
        events.append(FinishStepEvent())
        return events

    def _round_end(self, parts: list[str], drafts: dict[int, ToolCallDraft]) -> tuple[str, list[ToolCallDraft]]:
        """The finished round's text and tool calls; a round without calls leaves its text as the answer."""
        round_text = "".join(parts)
        self.produced_text.append(round_text)
        if round_text and self.tools_ran:
            self.text_after_last_tool = True
        calls = tool_calls_finished(drafts, log_prefix=self.log_prefix)
        if not calls:
            if round_text:
                self.transcript.row(ChatMessage.Role.ASSISTANT, round_text)
            self.partial_text = None
        return round_text, calls

    def _answer_end(self) -> list[StreamEvent]:
        """Every finished turn leaves an assistant row (so the duplicate rule accepts a resend
        of the same text); when its last round after a tool only thought, a sentence anyway."""
        if self.tools_ran and not self.text_after_last_tool:
            text_id = str(uuid.uuid4())
            self.transcript.row(ChatMessage.Role.ASSISTANT, FALLBACK_TEXT)
            return [
                StartStepEvent(),
                TextStartEvent(id=text_id),
                TextDeltaEvent(id=text_id, delta=FALLBACK_TEXT),
                TextEndEvent(id=text_id),
                FinishStepEvent(),
            ]
        if self.transcript.assistant_rows == 0:
            self.transcript.row(ChatMessage.Role.ASSISTANT, "")
        return []

    def _ended_by(self, exc: Exception) -> None:
        """How a turn that raised ends: a stop, the cost cap, the round limit or an error."""
        if isinstance(exc, _Stopped):
            self.stopped = True
        elif isinstance(exc, _CostCapReached):
            self.error_text, self.error_code = TURN_COST_CAP_TEXT, ERROR_TURN_COST_CAP
        elif isinstance(exc, _RoundLimit):
            rounds = settings.COPILOT_MAX_TOOL_ROUNDS
            self.error_text = f"Exceeded {rounds} tool-call rounds without a final response."
            self.error_code = ERROR_TOOL_ROUND_LIMIT
        else:
            # The raw exception text is for the logs; the user reads the failure class's sentence.
            self.error_code, self.error_text = failure_text(exc)
            logger.warning(
                "%s Turn failed (%s): %s: %s", self.log_prefix, self.error_code, type(exc).__name__, exc, exc_info=exc
            )

    def _closing_events(self) -> list[StreamEvent]:
        """After the last write: usage, the 80 % warning, the error, finish."""
        events: list[StreamEvent] = []
        if self.recorded.usage_event is not None:
            events.append(self.recorded.usage_event)
        if self.recorded.usage_warning is not None:
            events.append(DataEvent(name="usage-warning", data=self.recorded.usage_warning))
        if self.error_text is not None:
            events.append(DataErrorEvent(code=self.error_code))
            events.append(ErrorEvent(error_text=self.error_text, code=self.error_code))
        events.append(FinishEvent())
        return events

    def _over_cost_cap(self) -> bool:
        """Checked between rounds: a runaway tool loop stops once its spend reaches the cap."""
        if self.cost_cap_microdollars <= 0:
            return False
        spent = turn_spent_microdollars(
            self.usage, model=self.model, provider=self.provider_name, session_id=self.session_id
        )
        return spent is not None and spent >= self.cost_cap_microdollars

    # ------------------------------------------------------------------ setup and context

    async def _setup(self) -> None:
        self.provider_name = self.provider.name
        self.user, self.cost_cap_microdollars, self.approval_threshold_cents = await sync_to_async(
            connection_released(self._setup_sync)
        )()
        self.setup_done = True
        await self.followups.at_start()

    def _setup_sync(self) -> tuple[User, int, int | None]:
        """Load the transcript, open the turn's usage record; the owner, their cost cap and
        their tool approval threshold."""
        session = self.transcript.load(user_id=self.request.user_id)
        usage_services.turn_usage_start(
            turn_id=self.turn_id,
            session_id=self.session_id,
            user_id=session.user_id,
            model=self.model,
            provider=self.provider_name,
        )
        from chat.selectors import approval_threshold_get
        from ratelimits.selectors import turn_cost_cap_get

        return session.user, turn_cost_cap_get(user=session.user), approval_threshold_get(user=session.user)

    async def _prepare_context(self) -> list[StreamEvent]:
        messages, start = self.transcript.messages, self.transcript.current_start
        current = [row for row in messages[start:] if row.role == ChatMessage.Role.USER]
        attachments = self.transcript.attachments
        history = history_messages(messages[:start], self.transcript.snapshot, attachments)
        llm_text = self.transcript.llm_text
        current_llm: list[LLMMessage] = [
            user_llm_message(llm_text.get(id(row), row.content or ""), carried(row.file_ids, attachments))
            for row in current
        ]
        suffix = page_context_suffix(self.request.page_context)
        if suffix and current_llm:
            current_llm[-1] = {**current_llm[-1], "content": current_llm[-1]["content"] + suffix}
        # The current turn's images are part of the fixed cost: they are never compacted.
        system: LLMMessage = {"role": "system", "content": system_prompt()}
        tools = enabled_tools(authenticated=self.user is not None)
        # The operator's MCP servers that answer now add theirs (a down server only loses its own).
        tools += await mcp_turn_tools(user=self.user)
        self.tools = {tool.name: tool for tool in tools}
        self.tool_schemas = tool_schemas(tools)
        events: list[StreamEvent] = []
        fixed = estimate_tokens([system, *current_llm], self.tool_schemas, self.model)
        compaction = await compact_history(
            history, fixed_tokens=fixed, budget=budget_tokens(), model=self.model, summarize=self._summarize
        )
        if compaction is not None:
            self.compaction = compaction
            history = compaction.messages
            events = self._compaction_notice()
        self.llm_messages = merge_consecutive([system, *history, *current_llm])
        return events

    def _current_attachments_event(self) -> DataEvent | None:
        """``data-attachments``: the files the current turn's user messages carried, per message
        (``sequence``, ``client_message_id``, ``attachments`` as the file API shows them)."""
        start, found = self.transcript.current_start, self.transcript.attachments
        messages = [
            {
                "sequence": row.sequence,
                "client_message_id": row.client_message_id,
                "attachments": row_attachments(row, found),
            }
            for row in self.transcript.messages[start:]
            if row.role == ChatMessage.Role.USER and row.file_ids
        ]
        messages = [message for message in messages if message["attachments"]]
        return DataEvent(name="attachments", data={"messages": messages}) if messages else None

    async def _summarize(self, older: list[LLMMessage]) -> str:
        messages: list[LLMMessage] = [
            {"role": "system", "content": SUMMARY_SYSTEM_PROMPT},
            {"role": "user", "content": summary_transcript(older)},
        ]
        model = str(getattr(settings, "COPILOT_SUMMARY_MODEL", "") or settings.COPILOT_TITLE_MODEL)
        return await self.provider.complete(messages=messages, model=model)

    def _compaction_notice(self) -> list[StreamEvent]:
        """The synthetic ``context_compaction`` tool call the UI shows (never sent to the model)."""
        call_id = self.transcript.compaction_notice()
        return [
            ToolInputStartEvent(tool_call_id=call_id, tool_name=CONTEXT_COMPACTION_TOOL),
            ToolInputAvailableEvent(tool_call_id=call_id, tool_name=CONTEXT_COMPACTION_TOOL, input={}),
            ToolOutputAvailableEvent(
                tool_call_id=call_id, output=CONTEXT_COMPACTION_OUTPUT, tool_name=CONTEXT_COMPACTION_TOOL
            ),
        ]

    # ------------------------------------------------------------------ tools

    async def _run_tools(
        self, round_text: str, calls: list[ToolCallDraft], extras: Mapping[str, Any]
    ) -> AsyncGenerator[StreamEvent, None]:
        stored_calls = tool_calls_stored(calls)
        self.produced_text.extend(call["function"]["arguments"] for call in stored_calls)
        self.transcript.row(ChatMessage.Role.ASSISTANT, round_text, tool_calls=stored_calls)
        self.partial_text = None
        self.llm_messages.append({"role": "assistant", "content": round_text, "tool_calls": stored_calls, **extras})
        await self.transcript.save()  # the assistant row (and this round's reasoning) before any tool runs
        for call, stored in zip(calls, stored_calls, strict=True):
            if self.cancel.is_set():
                raise _Stopped
            arguments_text = stored["function"]["arguments"]
            try:
                arguments = json.loads(arguments_text)
                if not isinstance(arguments, dict):
                    raise ValueError("arguments must be a JSON object")
            except ValueError as exc:  # JSONDecodeError is a ValueError
                text = f"Invalid JSON arguments for tool '{call.name}': {exc}"
                images: list[dict[str, str]] = []
                metrics.tool_call_count(tool=call.name if call.name in self.tools else "unknown", success=False)
                yield ToolOutputAvailableEvent(tool_call_id=call.id, output=text, tool_name=call.name, success=False)
            else:
                yield ToolInputStartEvent(tool_call_id=call.id, tool_name=call.name)
                yield ToolInputAvailableEvent(tool_call_id=call.id, tool_name=call.name, input=arguments)
                ctx = ToolContext(
                    user=self.user,
                    session_id=self.session_id,
                    turn_id=self.turn_id,
                    tool_call_id=call.id,
                    cancel=self.cancel,
                )
                tool = self.tools.get(call.name)
                result: ToolRunResult | None = None
                reason = self._approval_reason(tool, arguments)
                if reason is not None:
                    result = await tool_preflight(tool=tool, name=call.name, arguments=arguments, ctx=ctx)
                if reason is not None and result is None:
                    assert tool is not None  # the preflight refuses an unknown tool
                    approval = await self.approvals.request(
                        call_id=call.id,
                        tool_name=call.name,
                        arguments=arguments,
                        reason=reason,
                        cost_cents=tool_cost_cents(tool),
                    )
                    yield ToolApprovalRequestEvent(approval_id=str(approval.pk), tool_call_id=call.id)
                    decision = await self.approvals.wait(approval)
                    if not decision.approved:
                        # Not run, so nothing is charged; the model reads why.
                        text = denial_text(call.name, decision)
                        yield ToolOutputDeniedEvent(tool_call_id=call.id)
                        metrics.tool_call_count(tool=call.name, success=False)
                        self.transcript.row(ChatMessage.Role.TOOL, text, tool_call_id=call.id, name=call.name)
                        self.llm_messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
                        continue
                if result is None:
                    result = await execute_tool(tool=tool, name=call.name, arguments=arguments, ctx=ctx)
                yield ToolOutputAvailableEvent(
                    tool_call_id=call.id, output=result.output, tool_name=call.name, success=result.success
                )
                metrics.tool_call_count(
                    tool=call.name if call.name in self.tools else "unknown", success=result.success
                )
                text = result.text
                images = [{"media_type": image.media_type, "data": image.data} for image in result.images]
            self.transcript.row(ChatMessage.Role.TOOL, text, tool_call_id=call.id, name=call.name)
            tool_message: dict[str, Any] = {"role": "tool", "tool_call_id": call.id, "content": text}
            if images:  # this turn only: image parts for providers that take them (rows keep the text)
                tool_message["images"] = images
            self.llm_messages.append(tool_message)
        self.tools_ran = True
        self.text_after_last_tool = False
        for event in await self.followups.at_boundary(self.llm_messages):
            yield event

    def _approval_reason(self, tool: Tool | None, arguments: dict[str, Any]) -> str | None:
        """Why this call asks the user first (chat/tools/approval.py), or None."""
        if tool is None or self.user is None:
            return None
        return approval_reason(
            tool=tool,
            cost_cents=tool_cost_cents(tool),
            threshold_cents=self.approval_threshold_cents,
            arguments=arguments,
        )

    # ------------------------------------------------------------------ cleanup

    async def _cleanup(self) -> None:
        """Persist what is left, record usage, close the provider. Runs on every exit path,
        including aclose(); it must not yield."""
        try:
            if self.setup_done:
                partial = "".join(self.partial_text) if self.partial_text else ""
                self.partial_text = None
                if partial:
                    self.produced_text.append(partial)
                self.transcript.close(partial=partial, stopped=self.stopped, error_text=self.error_text)
                try:
                    self.recorded = await sync_to_async(connection_released(self.transcript.finish_with_retry))(
                        self._turn_end()
                    )
                except TurnNotSaved:
                    logger.exception("%s Could not persist the end of the turn", self.log_prefix)
                    await sync_to_async(connection_released(turn_unsaved_mark))(
                        session_id=self.session_id, turn_id=self.turn_id
                    )
                    self.error_text, self.error_code = ANSWER_NOT_SAVED_TEXT, ANSWER_NOT_SAVED_CODE
                except Exception:
                    logger.exception("%s Could not persist the end of the turn", self.log_prefix)
        finally:
            try:
                await self.approvals.close_all()
            except Exception:
                logger.exception("%s Could not close the turn's pending approvals", self.log_prefix)
            if self._provider is not None:
                try:
                    await self._provider.aclose()
                except Exception:
                    logger.debug("provider close failed", exc_info=True)

    def _turn_end(self) -> TurnEnd:
        return TurnEnd(
            user=self.user,
            model=self.model,
            provider_name=self.provider_name,
            usage=self.usage,
            produced="".join(self.produced_text),
            llm_messages=self.llm_messages,
            tool_schemas=self.tool_schemas,
            stopped=self.stopped,
            error_text=self.error_text,
            claimed_at=self.request.claimed_at,
            compaction=self.compaction,
        )
