"""The turn engine: one chat turn as an async generator of stream events.

    stream = run_turn(request, hooks)     # a TurnRequest and the worker's TurnHooks
    try:
        async for event in stream:
            publish(event.to_wire())
    finally:
        await stream.aclose()   # a stop: the engine's cleanup persists partial output

Dispatch has already saved the user's message, and the worker holds the
session's stream lock for the whole turn. Everything shown live is persisted, in
order, by the time ``finish`` is yielded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError

from chat import services
from chat.errors import SessionNotFound
from chat.models import (
    COPILOT_SYSTEM_PREFIX,
    STOPPED_BY_USER_MARKER,
    ChatMessage,
    ChatSession,
    ContextSnapshot,
    TurnUsage,
)
from chat.selectors import context_snapshot_get, session_messages
from chat.tools import Tool, ToolContext, enabled_tools, execute_tool, tool_schemas
from chat.turns import turn_duration_ms

from .context import (
    CONTEXT_COMPACTION_OUTPUT,
    CONTEXT_COMPACTION_TOOL,
    SUMMARY_SYSTEM_PROMPT,
    Compaction,
    SnapshotState,
    budget_tokens,
    compact_history,
    count_text_tokens,
    estimate_tokens,
    for_request,
    history_messages,
    load_snapshot_state,
    merge_consecutive,
    page_context_suffix,
    prune_orphan_tool_calls,
    split_current_turn,
    summary_transcript,
    system_prompt,
)
from .events import (
    ERROR_LLM,
    ERROR_TOOL_ROUND_LIMIT,
    DataErrorEvent,
    DataEvent,
    DataUsageEvent,
    ErrorEvent,
    FinishEvent,
    FinishStepEvent,
    StartEvent,
    StartStepEvent,
    StreamEvent,
    TextDeltaEvent,
    TextEndEvent,
    TextStartEvent,
    ToolInputAvailableEvent,
    ToolInputStartEvent,
    ToolOutputAvailableEvent,
)
from .followups import PendingLike, format_follow_up_block, turn_start_llm_text
from .providers import (
    AssistantExtraDelta,
    LLMMessage,
    LLMProvider,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
    get_provider,
    reasoning_budget_for,
)
from .reasoning import ReasoningEmitter
from .request import TurnHooks, TurnRequest
from .usage import UsageTotals, to_microdollars, turn_cost

logger = logging.getLogger(__name__)

FALLBACK_TEXT = "(Done — no further commentary.)"
ERROR_ROW_PREFIX = f"{COPILOT_SYSTEM_PREFIX} Error: "


class _Stopped(Exception):
    """The turn's cancel event was set: finish as a user stop."""


class _RoundLimit(Exception):
    pass


class _CostCapReached(Exception):
    """The turn's spend reached the per-turn cap of the user's plan."""


TURN_COST_CAP_TEXT = (
    "This reply was stopped because it reached the per-reply spending limit of your plan. "
    "What it produced so far is saved; ask a narrower follow-up to continue."
)
ERROR_TURN_COST_CAP = "turn_cost_cap"


@dataclass
class _ToolCallDraft:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Loaded:
    session: ChatSession
    rows: list[ChatMessage]
    snapshot_messages: Any
    snapshot_watermark: int
    snapshot_failed: bool


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
        self.turn_id = turn_id = request.turn_id
        self.mode = request.mode
        self.model = resolve_model(request.model)
        self.cancel = hooks.cancel
        self.drain_pending = hooks.drain_pending
        self.requeue_pending = hooks.requeue_pending
        self._provider: LLMProvider | None = None
        self.message_id = str(uuid.uuid4())
        self.log_prefix = f"[session {self.session_id} turn {turn_id}]"

        self.provider_name = ""
        self.current_start = 0
        self.llm_text: dict[int, str] = {}  # LLM text of rows whose stored content differs (by id())
        self.session: ChatSession | None = None
        self.user: Any = None
        self.cost_cap_microdollars = 0
        self.messages: list[ChatMessage] = []  # the working list; rows with sequence None are unsaved
        self.emitter = ReasoningEmitter(self.messages, turn_id=turn_id)
        self.llm_messages: list[LLMMessage] = []
        self.tools: dict[str, Tool] = {}
        self.tool_schemas: list[dict[str, Any]] = []
        self.usage = UsageTotals()
        self.partial_text: list[str] | None = None  # the open round's text, until it is in a row
        self.produced_text: list[str] = []  # every text/reasoning/argument piece (for estimates)
        self.assistant_rows = 0
        self.tools_ran = False
        self.text_after_last_tool = False
        self.compaction: Compaction | None = None
        self.snapshot = SnapshotState()
        self.snapshot_watermark = 0
        self.error_text: str | None = None
        self.error_code = ERROR_LLM
        self.stopped = False
        self.setup_done = False
        self.usage_event: DataUsageEvent | None = None
        self.usage_warning: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers

    @property
    def provider(self) -> LLMProvider:
        if self._provider is None:
            self._provider = get_provider()
        return self._provider

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _row(self, role: str, content: str | None, **fields: Any) -> ChatMessage:
        row = ChatMessage(role=role, content=content, turn_id=self.turn_id, **fields)
        self.messages.append(row)
        if role == ChatMessage.Role.ASSISTANT:
            self.assistant_rows += 1
        return row

    async def _save(self) -> None:
        """Persist every unsaved row of the working list (one write)."""
        self.emitter.sync()
        await sync_to_async(services.messages_save_new)(session_id=self.session_id, messages=self.messages)

    # ------------------------------------------------------------------ the turn

    async def run(self) -> AsyncGenerator[StreamEvent, None]:
        try:
            self.provider_name = self.provider.name
            await self._setup()
            yield StartEvent(message_id=self.message_id, session_id=self.session_id)
            for event in await self._prepare_context():
                yield event
            rounds = int(settings.COPILOT_MAX_TOOL_ROUNDS)
            reasoning_budget = reasoning_budget_for(mode=self.mode, model=self.model)
            for _ in range(rounds):
                if self._cancelled():
                    raise _Stopped
                # ---- one LLM round, streamed (inlined: this loop is the hot path)
                yield StartStepEvent()
                text_id = str(uuid.uuid4())
                text_started = False
                parts: list[str] = []
                self.partial_text = parts
                drafts: dict[int, _ToolCallDraft] = {}
                extras: dict[str, Any] = {}
                round_error: Exception | None = None
                emitter = self.emitter
                stream = self.provider.stream_round(
                    messages=for_request(self.llm_messages),
                    tools=self.tool_schemas,
                    model=self.model,
                    reasoning_budget=reasoning_budget,
                )
                try:
                    async for delta in stream:
                        if self.cancel is not None and self.cancel.is_set():
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
                            draft = drafts.get(delta.index)
                            if draft is None:
                                draft = drafts[delta.index] = _ToolCallDraft()
                            if delta.id:
                                draft.id = delta.id
                            if delta.name:
                                draft.name = delta.name
                            if delta.arguments:
                                draft.arguments.append(delta.arguments)
                        elif isinstance(delta, UsageDelta):
                            self.usage.add(delta)
                        elif isinstance(delta, AssistantExtraDelta):
                            extras.update(delta.fields)
                except Exception as exc:  # incl. _Stopped; GeneratorExit/CancelledError pass through
                    round_error = exc
                finally:
                    await stream.aclose()
                # Round end, fixed order, on every path we may still yield on:
                # reasoning-end → text-end → finish-step.
                for event in emitter.close():
                    yield event
                if text_started:
                    yield TextEndEvent(id=text_id)
                yield FinishStepEvent()
                if round_error is not None:
                    raise round_error
                # ---- round end
                round_text = "".join(parts)
                self.produced_text.append(round_text)
                if round_text and self.tools_ran:
                    self.text_after_last_tool = True
                calls = self._finished_calls(drafts)
                if not calls:
                    if round_text:
                        self._row(ChatMessage.Role.ASSISTANT, round_text)
                    self.partial_text = None
                    break
                async with aclosing(self._run_tools(round_text, calls, extras)) as tool_events:
                    async for event in tool_events:
                        yield event
                if self._over_cost_cap():
                    raise _CostCapReached
            else:
                raise _RoundLimit
            if self.tools_ran and not self.text_after_last_tool:
                # The last round after a tool only thought: end with a sentence anyway.
                text_id = str(uuid.uuid4())
                yield StartStepEvent()
                yield TextStartEvent(id=text_id)
                yield TextDeltaEvent(id=text_id, delta=FALLBACK_TEXT)
                yield TextEndEvent(id=text_id)
                yield FinishStepEvent()
                self._row(ChatMessage.Role.ASSISTANT, FALLBACK_TEXT)
            elif self.assistant_rows == 0:
                # Decision (SPEC 4.10.7): every finished turn leaves an assistant row, so the
                # duplicate rule accepts a resend of the same text.
                self._row(ChatMessage.Role.ASSISTANT, "")
        except _Stopped:
            self.stopped = True
        except _CostCapReached:
            self.error_text = TURN_COST_CAP_TEXT
            self.error_code = ERROR_TURN_COST_CAP
        except _RoundLimit:
            self.error_text = f"Exceeded {settings.COPILOT_MAX_TOOL_ROUNDS} tool-call rounds without a final response."
            self.error_code = ERROR_TOOL_ROUND_LIMIT
        except (GeneratorExit, asyncio.CancelledError):
            self.stopped = True  # aclose() or task cancellation: a stop
            raise
        except Exception as exc:
            logger.warning("%s Turn failed", self.log_prefix, exc_info=True)
            self.error_text = str(exc) or type(exc).__name__
            self.error_code = ERROR_LLM
        finally:
            await self._cleanup()
        # Never yield inside the finally: during aclose() that raises RuntimeError.
        if self.usage_event is not None:
            yield self.usage_event
        if self.usage_warning is not None:
            yield DataEvent(name="usage-warning", data=self.usage_warning)
        if self.error_text is not None:
            yield DataErrorEvent(code=self.error_code)
            yield ErrorEvent(error_text=self.error_text, code=self.error_code)
        yield FinishEvent()

    def _over_cost_cap(self) -> bool:
        """Checked between rounds: a runaway tool loop stops once its spend reaches the cap."""
        if self.cost_cap_microdollars <= 0:
            return False
        if self.usage.rounds_with_cost:
            spent: int | None = to_microdollars(self.usage.reported_cost_usd)
        else:
            spent = turn_cost(
                self.usage, model=self.model, provider=self.provider_name, session_id=self.session_id
            ).microdollars
        return spent is not None and spent >= self.cost_cap_microdollars

    # ------------------------------------------------------------------ setup

    def _load(self) -> _Loaded:
        try:
            session = ChatSession.objects.select_related("user").get(pk=self.session_id)
        except (ChatSession.DoesNotExist, ValidationError, ValueError) as exc:
            raise SessionNotFound(self.session_id) from exc
        if session.user_id != self.request.user_id:
            logger.warning("%s Session is not owned by user %s", self.log_prefix, self.request.user_id)
            raise SessionNotFound(self.session_id)
        rows = session_messages(session_id=self.session_id)
        snapshot_messages: Any = None
        watermark = 0
        failed = False
        try:
            snapshot = context_snapshot_get(session_id=self.session_id)
        except Exception:
            logger.warning("%s Could not load the context snapshot", self.log_prefix, exc_info=True)
            failed = True
        else:
            if snapshot is not None:
                snapshot_messages, watermark = snapshot.messages, snapshot.message_count
        services.turn_usage_start(
            turn_id=self.turn_id,
            session_id=self.session_id,
            user_id=session.user_id,
            model=self.model,
            provider=self.provider_name,
        )
        return _Loaded(session, rows, snapshot_messages, watermark, failed)

    async def _setup(self) -> None:
        loaded = await sync_to_async(self._load)()
        self.session = loaded.session
        self.user = loaded.session.user
        self.cost_cap_microdollars = await sync_to_async(_turn_cost_cap)(self.user)
        rows = loaded.rows
        start = split_current_turn(rows)
        prior, current = rows[:start], rows[start:]
        prune_orphan_tool_calls(prior, log_prefix=self.log_prefix)
        # From here on self.messages is the one list the turn persists.
        self.messages.extend(prior)
        self.messages.extend(current)
        self.current_start = len(prior)
        self.snapshot_watermark = current[0].sequence if current and current[0].sequence is not None else len(rows)
        self.snapshot = load_snapshot_state(
            loaded.snapshot_messages,
            loaded.snapshot_watermark,
            total_prior=self.snapshot_watermark,
            load_failed=loaded.snapshot_failed,
        )
        self.setup_done = True
        if self.drain_pending is not None:
            await self._drain_at_start()

    async def _drain_at_start(self) -> None:
        """Follow-ups that arrived after the turn was claimed join the current user turn."""
        assert self.drain_pending is not None
        drained = await self._drain()
        if not drained:
            return
        rows = []
        for message in drained:
            row = self._row(ChatMessage.Role.USER, message.content)
            self.llm_text[id(row)] = turn_start_llm_text(message)
            rows.append(row)
        try:
            await self._save()
        except Exception:
            logger.warning("%s Could not persist follow-ups drained at turn start", self.log_prefix, exc_info=True)
            await self._give_back(rows, drained)

    async def _drain(self) -> list[PendingLike]:
        if self.drain_pending is None:
            return []
        try:
            return list(await self.drain_pending())
        except Exception:
            logger.warning("%s Draining pending follow-ups failed; treated as empty", self.log_prefix, exc_info=True)
            return []

    async def _give_back(self, rows: Sequence[ChatMessage], drained: list[PendingLike]) -> None:
        """Remove unsaved follow-up rows from memory and hand the messages back, in order."""
        for row in rows:
            if row.sequence is None and row in self.messages:
                self.messages.remove(row)
        if self.requeue_pending is not None:
            try:
                await self.requeue_pending(drained)
            except Exception:
                logger.warning("%s Re-queueing follow-ups failed", self.log_prefix, exc_info=True)
        logger.warning("%s %d follow-up(s) could not be saved and were re-queued", self.log_prefix, len(drained))

    # ------------------------------------------------------------------ context

    async def _prepare_context(self) -> list[StreamEvent]:
        prior = self.messages[: self.current_start]
        current = [row for row in self.messages[self.current_start :] if row.role == ChatMessage.Role.USER]
        history = history_messages(prior, self.snapshot)
        current_llm: list[LLMMessage] = [
            {"role": "user", "content": self.llm_text.get(id(row), row.content or "")} for row in current
        ]
        suffix = page_context_suffix(self.request.page_context)
        if suffix and current_llm:
            current_llm[-1] = {**current_llm[-1], "content": current_llm[-1]["content"] + suffix}
        system: LLMMessage = {"role": "system", "content": system_prompt()}
        tools = enabled_tools(authenticated=self.user is not None)
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

    async def _summarize(self, older: list[LLMMessage]) -> str:
        messages: list[LLMMessage] = [
            {"role": "system", "content": SUMMARY_SYSTEM_PROMPT},
            {"role": "user", "content": summary_transcript(older)},
        ]
        model = str(getattr(settings, "COPILOT_SUMMARY_MODEL", "") or settings.COPILOT_TITLE_MODEL)
        return await self.provider.complete(messages=messages, model=model)

    def _compaction_notice(self) -> list[StreamEvent]:
        """The synthetic ``context_compaction`` tool call the UI shows (never sent to the model)."""
        call_id = f"compaction_{uuid.uuid4().hex[:12]}"
        call = {"id": call_id, "type": "function", "function": {"name": CONTEXT_COMPACTION_TOOL, "arguments": "{}"}}
        notice = ChatMessage(role=ChatMessage.Role.ASSISTANT, content="", tool_calls=[call], turn_id=self.turn_id)
        self.messages.append(notice)
        self._row(ChatMessage.Role.TOOL, CONTEXT_COMPACTION_OUTPUT, tool_call_id=call_id, name=CONTEXT_COMPACTION_TOOL)
        return [
            ToolInputStartEvent(tool_call_id=call_id, tool_name=CONTEXT_COMPACTION_TOOL),
            ToolInputAvailableEvent(tool_call_id=call_id, tool_name=CONTEXT_COMPACTION_TOOL, input={}),
            ToolOutputAvailableEvent(
                tool_call_id=call_id, output=CONTEXT_COMPACTION_OUTPUT, tool_name=CONTEXT_COMPACTION_TOOL
            ),
        ]

    # ------------------------------------------------------------------ tools

    def _finished_calls(self, drafts: dict[int, _ToolCallDraft]) -> list[_ToolCallDraft]:
        calls = []
        for index in sorted(drafts):
            draft = drafts[index]
            if not draft.name:
                logger.warning("%s Dropping a tool call without a name", self.log_prefix)
                continue
            if not draft.id:
                draft.id = f"call_{uuid.uuid4().hex[:24]}"
            calls.append(draft)
        return calls

    async def _run_tools(
        self, round_text: str, calls: list[_ToolCallDraft], extras: Mapping[str, Any]
    ) -> AsyncGenerator[StreamEvent, None]:
        stored_calls: list[dict[str, Any]] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.arguments) or "{}"},
            }
            for call in calls
        ]
        self.produced_text.extend(call["function"]["arguments"] for call in stored_calls)
        self._row(ChatMessage.Role.ASSISTANT, round_text, tool_calls=stored_calls)
        self.partial_text = None
        self.llm_messages.append({"role": "assistant", "content": round_text, "tool_calls": stored_calls, **extras})
        await self._save()  # the assistant row (and this round's reasoning) before any tool runs
        for call, stored in zip(calls, stored_calls, strict=True):
            if self._cancelled():
                raise _Stopped
            name = call.name
            arguments_text = stored["function"]["arguments"]
            try:
                arguments = json.loads(arguments_text)
                if not isinstance(arguments, dict):
                    raise ValueError("arguments must be a JSON object")
            except ValueError as exc:  # JSONDecodeError is a ValueError
                text = f"Invalid JSON arguments for tool '{name}': {exc}"
                yield ToolOutputAvailableEvent(tool_call_id=call.id, output=text, tool_name=name, success=False)
            else:
                yield ToolInputStartEvent(tool_call_id=call.id, tool_name=name)
                yield ToolInputAvailableEvent(tool_call_id=call.id, tool_name=name, input=arguments)
                ctx = ToolContext(
                    user=self.user,
                    session_id=self.session_id,
                    turn_id=self.turn_id,
                    tool_call_id=call.id,
                    cancel=self.cancel,
                )
                result = await execute_tool(tool=self.tools.get(name), name=name, arguments=arguments, ctx=ctx)
                yield ToolOutputAvailableEvent(
                    tool_call_id=call.id, output=result.output, tool_name=name, success=result.success
                )
                text = result.text
            self._row(ChatMessage.Role.TOOL, text, tool_call_id=call.id, name=name)
            self.llm_messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        self.tools_ran = True
        self.text_after_last_tool = False
        for event in await self._boundary_drain():
            yield event

    async def _boundary_drain(self) -> list[StreamEvent]:
        """Persist the round's tool rows together with follow-ups drained now (SPEC 4.15.5)."""
        drained = await self._drain()
        rows = [self._row(ChatMessage.Role.USER, message.content) for message in drained]
        try:
            await self._save()
        except Exception:
            if not drained:
                raise
            logger.warning("%s Could not persist tool rows and follow-ups", self.log_prefix, exc_info=True)
        if not drained:
            return []
        if any(row.sequence is None for row in rows):
            await self._give_back(rows, drained)
            return []
        self.llm_messages.append({"role": "user", "content": format_follow_up_block(drained)})
        notice = {"count": len(drained), "messages": [message.content for message in drained]}
        return [DataEvent(name="pending-drained", data=notice)]

    # ------------------------------------------------------------------ cleanup

    async def _cleanup(self) -> None:
        """Persist what is left, record usage, close the provider. Runs on every exit path,
        including aclose(); it must not yield."""
        try:
            if self.setup_done:
                self.emitter.close()
                partial = "".join(self.partial_text) if self.partial_text else ""
                self.partial_text = None
                if partial:
                    self.produced_text.append(partial)
                    self._row(ChatMessage.Role.ASSISTANT, partial)
                if self.stopped:
                    self._row(ChatMessage.Role.ASSISTANT, STOPPED_BY_USER_MARKER)
                elif self.error_text is not None:
                    self._row(ChatMessage.Role.ASSISTANT, ERROR_ROW_PREFIX + self.error_text)
                try:
                    await sync_to_async(self._finish_sync)()
                except Exception:
                    logger.exception("%s Could not persist the end of the turn", self.log_prefix)
        finally:
            if self._provider is not None:
                try:
                    await self._provider.aclose()
                except Exception:
                    logger.debug("provider close failed", exc_info=True)

    def _finish_sync(self) -> None:
        """The turn's last writes: remaining rows, usage and cost, the context snapshot."""
        self.emitter.sync()
        saved_last = self._set_duration()
        services.messages_save_new(session_id=self.session_id, messages=self.messages)
        if saved_last is not None:
            ChatMessage.objects.filter(pk=saved_last.pk).update(duration_ms=saved_last.duration_ms)
        self._record_usage()
        if self.compaction is not None and self.snapshot.may_write:
            ContextSnapshot.objects.update_or_create(
                session_id=self.session_id,
                defaults={"messages": self.compaction.messages, "message_count": self.snapshot_watermark},
            )

    def _set_duration(self) -> ChatMessage | None:
        """Put the turn's wall time on its last assistant row; that row when it is already
        saved (it then needs an update), None otherwise."""
        if self.request.claimed_at <= 0 or self.error_text is not None:
            return None
        last = next((row for row in reversed(self.messages) if row.role == ChatMessage.Role.ASSISTANT), None)
        if last is None or last.turn_id != self.turn_id:
            return None
        last.duration_ms = turn_duration_ms(self.request.claimed_at)
        return last if last.sequence is not None else None

    def _record_usage(self) -> None:
        usage = self.usage
        produced = "".join(self.produced_text)
        if usage.rounds_with_usage == 0:
            failed_without_output = (self.error_text is not None or self.stopped) and not produced
            if not failed_without_output:
                # No usage reported at all: estimate for display, never for spend.
                usage.prompt_tokens = max(estimate_tokens(self.llm_messages, self.tool_schemas, self.model), 1)
                usage.completion_tokens = count_text_tokens(produced, self.model)
                usage.tokens_estimated = True
        cost = turn_cost(usage, model=self.model, provider=self.provider_name, session_id=self.session_id)
        if self.stopped:
            outcome = TurnUsage.Outcome.CANCELLED
        elif self.error_text is not None:
            outcome = TurnUsage.Outcome.FAILED
        else:
            outcome = TurnUsage.Outcome.COMPLETED
        services.turn_usage_finish(
            turn_id=self.turn_id,
            session_id=self.session_id,
            user=self.user,
            outcome=outcome,
            error=self.error_text or "",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_creation_tokens=usage.cache_creation_tokens,
            tokens_estimated=usage.tokens_estimated,
            cost_microdollars=cost.microdollars,
            cost_source=cost.source,
        )
        if self.error_text is None and (cost.microdollars or 0) > 0:
            self.usage_warning = _usage_warning(self.user)
        if usage.total_tokens > 0:
            self.usage_event = DataUsageEvent(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_creation_tokens=usage.cache_creation_tokens,
            )


def _usage_warning(user: Any) -> dict[str, Any] | None:
    """The `data-usage-warning` payload when this turn's spend pushed a window past 80 %."""
    if user is None:
        return None
    from ratelimits.services import consume_usage_warning

    warning = consume_usage_warning(user=user)
    return dict(warning) if warning is not None else None


def _turn_cost_cap(user: Any) -> int:
    """The per-turn cost cap of the user's plan in microdollars (0 = none)."""
    if user is None:
        return 0
    from ratelimits.selectors import turn_cost_cap_microdollars

    return turn_cost_cap_microdollars(user=user)
