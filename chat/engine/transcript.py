"""A turn's transcript: the working list of rows, how it is loaded, and every write of it.

The engine keeps one list, ``Transcript.messages``: the session's saved rows
followed by the rows this turn adds, which carry no sequence until they are
saved. Rows are persisted in order, at the points where the user could otherwise
lose what they saw: an assistant row with tool calls before its tools run, the
tool rows at the round boundary, and the rest in the end-of-turn write, which
also records the turn's usage and cost and the context snapshot.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connection

from chat.errors import SessionNotFound
from chat.models import (
    STOPPED_TEXT,
    Attachment,
    ChatMessage,
    ChatSession,
    ContextSnapshot,
    TurnUsage,
)
from chat.selectors import attachments_by_id, context_snapshot_get, message_attachments, session_messages
from chat.services import messages as message_services
from chat.services import usage as usage_services
from chat.turns.registry import turn_duration_ms
from copilot_site.core.sql import connection_released

from .context import (
    CONTEXT_COMPACTION_OUTPUT,
    CONTEXT_COMPACTION_TOOL,
    Compaction,
    SnapshotState,
    count_text_tokens,
    estimate_tokens,
    load_snapshot_state,
    prune_orphan_tool_calls,
    snapshot_on_branch,
    split_current_turn,
)
from .events import DataUsageEvent
from .providers import LLMMessage
from .reasoning import ReasoningEmitter
from .usage import UsageTotals, turn_cost

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

# Waits between attempts of the end-of-turn write while the database is unavailable
# (31.5 s in all): long enough for a restart or a fail-over, while the turn's stream
# still shows heartbeats. A broken connection is closed before each new attempt.
END_WRITE_BACKOFF_S: tuple[float, ...] = (0.5, 1, 2, 4, 8, 8, 8)


class TurnNotSaved(Exception):
    """The end-of-turn write failed on every attempt: the database stayed unavailable."""


@dataclass
class TurnEnd:
    """How the turn ended and what it spent: what the end-of-turn write records."""

    user: User | None
    model: str
    provider_name: str
    usage: UsageTotals
    produced: str  # every text, reasoning and argument piece the turn produced
    llm_messages: list[LLMMessage]
    tool_schemas: list[dict[str, Any]]
    stopped: bool
    error_text: str | None
    claimed_at: float
    compaction: Compaction | None


@dataclass
class TurnRecorded:
    """What the end-of-turn write leaves for the client: the usage frame and the 80 % warning."""

    usage_event: DataUsageEvent | None = None
    usage_warning: dict[str, Any] | None = None
    steps_done: set[str] = field(default_factory=set)


class Transcript:
    def __init__(self, *, session_id: str, turn_id: str, log_prefix: str) -> None:
        self.session_id = session_id
        self.turn_id = turn_id
        self.log_prefix = log_prefix
        self.messages: list[ChatMessage] = []  # rows with sequence None are unsaved
        self.emitter = ReasoningEmitter(self.messages, turn_id=turn_id)
        self.llm_text: dict[int, str] = {}  # the model's text of rows whose stored content differs (by id())
        self.current_start = 0  # index of the current user turn's first row
        self.assistant_rows = 0  # assistant rows this turn added
        self.snapshot = SnapshotState()
        self.snapshot_watermark = 0
        self.attachments: dict[str, Attachment] = {}  # the files the rows carry, by id

    def remember_attachments(self, file_ids: Iterable[object]) -> None:
        """Load the files of these ids that are not known yet (rows added during the turn)."""
        missing = [str(file_id) for file_id in file_ids if str(file_id) not in self.attachments]
        if missing:
            self.attachments.update(attachments_by_id(file_ids=missing))
        self.snapshot_last: int | None = None  # the last history row a new snapshot covers
        self.model_choice = ""  # `standard` | `advanced`, recorded on the turn's assistant rows
        self.mode_choice = ""  # `fast` | `extended_thinking`

    # ------------------------------------------------------------------ rows

    def row(self, role: str, content: str | None, **fields: Any) -> ChatMessage:
        if role == ChatMessage.Role.ASSISTANT:
            fields.setdefault("model", self.model_choice)
            fields.setdefault("mode", self.mode_choice)
        row = ChatMessage(role=role, content=content, turn_id=self.turn_id, **fields)
        self.messages.append(row)
        if role == ChatMessage.Role.ASSISTANT:
            self.assistant_rows += 1
        return row

    def user_row(self, content: str, *, llm_text: str | None = None, file_ids: Sequence[str] = ()) -> ChatMessage:
        row = self.row(ChatMessage.Role.USER, content, file_ids=list(file_ids))
        if llm_text is not None:
            self.llm_text[id(row)] = llm_text
        return row

    def compaction_notice(self) -> str:
        """The rows of the synthetic ``context_compaction`` tool call the UI shows; its call id."""
        call_id = f"compaction_{uuid.uuid4().hex[:12]}"
        call = {"id": call_id, "type": "function", "function": {"name": CONTEXT_COMPACTION_TOOL, "arguments": "{}"}}
        notice = ChatMessage(role=ChatMessage.Role.ASSISTANT, content="", tool_calls=[call], turn_id=self.turn_id)
        self.messages.append(notice)  # not counted as an answer: the turn still leaves one
        self.row(ChatMessage.Role.TOOL, CONTEXT_COMPACTION_OUTPUT, tool_call_id=call_id, name=CONTEXT_COMPACTION_TOOL)
        return call_id

    def forget(self, rows: list[ChatMessage]) -> None:
        """Take rows that could not be saved out of the list again."""
        for row in rows:
            if row.sequence is None and row in self.messages:
                self.messages.remove(row)

    async def save(self) -> None:
        """Persist every unsaved row of the working list (one write)."""
        self.emitter.sync()
        await sync_to_async(connection_released(message_services.messages_save_new))(
            session_id=self.session_id, messages=self.messages
        )

    # ------------------------------------------------------------------ loading

    def load(self, *, user_id: int) -> ChatSession:
        """The session (with its user) and the rows of its current branch (the context the
        model sees is exactly that branch), the current user turn split off and orphaned
        tool calls of the history pruned, and the context snapshot's state (a snapshot
        made on another branch is not used)."""
        try:
            session = ChatSession.objects.select_related("user").get(pk=self.session_id)
        except (ChatSession.DoesNotExist, ValidationError, ValueError) as exc:
            raise SessionNotFound(self.session_id) from exc
        if session.user_id != user_id:
            logger.warning("%s Session is not owned by user %s", self.log_prefix, user_id)
            raise SessionNotFound(self.session_id)
        rows = session_messages(session_id=self.session_id, leaf_sequence=session.leaf_sequence)
        self.attachments = message_attachments(rows)
        snapshot_messages: Any = None
        watermark = 0
        covers_last: int | None = None
        failed = False
        try:
            snapshot = context_snapshot_get(session_id=self.session_id)
        except Exception:
            logger.warning("%s Could not load the context snapshot", self.log_prefix, exc_info=True)
            failed = True
        else:
            if snapshot is not None:
                snapshot_messages, watermark = snapshot.messages, snapshot.message_count
                covers_last = snapshot.last_sequence
        start = split_current_turn(rows)
        prior, current = rows[:start], rows[start:]
        if snapshot_messages is not None and not snapshot_on_branch(prior, watermark, covers_last):
            logger.info("%s The context snapshot is of another branch; using this branch's history", self.log_prefix)
            snapshot_messages = None
        prune_orphan_tool_calls(prior, log_prefix=self.log_prefix)
        self.messages.extend(prior)
        self.messages.extend(current)
        self.current_start = len(prior)
        if current and current[0].sequence is not None:
            self.snapshot_watermark = current[0].sequence
        else:
            self.snapshot_watermark = rows[-1].sequence + 1 if rows else 0
        self.snapshot_last = prior[-1].sequence if prior else None
        self.snapshot = load_snapshot_state(
            snapshot_messages, watermark, total_prior=self.snapshot_watermark, load_failed=failed
        )
        return session

    # ------------------------------------------------------------------ the end of the turn

    def close(self, *, partial: str, stopped: bool, error_text: str | None) -> None:
        """The rows a turn ends with: the open round's text, then the stop marker or the error."""
        self.emitter.close()
        if partial:
            self.row(ChatMessage.Role.ASSISTANT, partial)
        if stopped:
            self.row(ChatMessage.Role.ASSISTANT, STOPPED_TEXT, kind=ChatMessage.Kind.STOPPED)
        elif error_text is not None:
            self.row(ChatMessage.Role.ASSISTANT, error_text, kind=ChatMessage.Kind.ERROR_NOTICE)

    def finish_with_retry(self, end: TurnEnd) -> TurnRecorded:
        """`finish`, tried again after each wait of ``END_WRITE_BACKOFF_S`` while the database
        is unavailable; raises `TurnNotSaved` when the last attempt fails too. A step that
        committed is not repeated: rows carry their sequence once saved, and the usage is
        recorded once."""
        progress = TurnRecorded()
        for attempt, wait in enumerate((*END_WRITE_BACKOFF_S, None), start=1):
            try:
                return self.finish(end, progress=progress)
            except (OperationalError, InterfaceError) as exc:
                if wait is None:
                    raise TurnNotSaved(str(exc)) from exc
                logger.warning(
                    "%s End-of-turn write failed (attempt %d), retrying in %ss: %s", self.log_prefix, attempt, wait, exc
                )
                connection.close()  # a terminated connection is not reused
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def finish(self, end: TurnEnd, *, progress: TurnRecorded | None = None) -> TurnRecorded:
        """The turn's last writes: remaining rows, usage and cost, the context snapshot.
        `progress` carries the steps an earlier attempt committed."""
        recorded = progress if progress is not None else TurnRecorded()
        self.emitter.sync()
        if "rows" not in recorded.steps_done:
            saved_last = self._set_duration(end)
            message_services.messages_save_new(session_id=self.session_id, messages=self.messages)
            if saved_last is not None:
                ChatMessage.objects.filter(pk=saved_last.pk).update(duration_ms=saved_last.duration_ms)
            recorded.steps_done.add("rows")
        if "usage" not in recorded.steps_done:
            self._record_usage(end, recorded)
            recorded.steps_done.add("usage")
        if end.compaction is not None and self.snapshot.may_write:
            ContextSnapshot.objects.update_or_create(
                session_id=self.session_id,
                defaults={
                    "messages": end.compaction.messages,
                    "message_count": self.snapshot_watermark,
                    "last_sequence": self.snapshot_last,
                },
            )
        return recorded

    def _set_duration(self, end: TurnEnd) -> ChatMessage | None:
        """Put the turn's wall time on its last assistant row; that row when it is already
        saved (it then needs an update), None otherwise."""
        if end.claimed_at <= 0 or end.error_text is not None:
            return None
        last = next((row for row in reversed(self.messages) if row.role == ChatMessage.Role.ASSISTANT), None)
        if last is None or last.turn_id != self.turn_id:
            return None
        last.duration_ms = turn_duration_ms(end.claimed_at)
        return last if last.sequence is not None else None

    def _record_usage(self, end: TurnEnd, recorded: TurnRecorded) -> None:
        usage = end.usage
        if usage.rounds_with_usage == 0:
            failed_without_output = (end.error_text is not None or end.stopped) and not end.produced
            if not failed_without_output:
                # No usage reported at all: estimate for display, never for spend.
                usage.prompt_tokens = max(estimate_tokens(end.llm_messages, end.tool_schemas, end.model), 1)
                usage.completion_tokens = count_text_tokens(end.produced, end.model)
                usage.tokens_estimated = True
        cost = turn_cost(usage, model=end.model, provider=end.provider_name, session_id=self.session_id)
        if end.stopped:
            outcome = TurnUsage.Outcome.CANCELLED
        elif end.error_text is not None:
            outcome = TurnUsage.Outcome.FAILED
        else:
            outcome = TurnUsage.Outcome.COMPLETED
        usage_services.turn_usage_finish(
            turn_id=self.turn_id,
            session_id=self.session_id,
            user=end.user,
            outcome=outcome,
            error=end.error_text or "",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_creation_tokens=usage.cache_creation_tokens,
            tokens_estimated=usage.tokens_estimated,
            cost_microdollars=cost.microdollars,
            cost_source=cost.source,
        )
        if end.error_text is None and (cost.microdollars or 0) > 0:
            recorded.usage_warning = _usage_warning(end.user)
        if usage.total_tokens > 0:
            recorded.usage_event = DataUsageEvent(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_creation_tokens=usage.cache_creation_tokens,
            )


def _usage_warning(user: User | None) -> dict[str, Any] | None:
    """The `data-usage-warning` payload when this turn's spend pushed a window past 80 %."""
    if user is None:
        return None
    from ratelimits.services import usage_warning_consume

    warning = usage_warning_consume(user=user)
    return dict(warning) if warning is not None else None
