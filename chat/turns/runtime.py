"""Worker side of a turn: locks, liveness, cancel, publishing, completion.

The Celery task submits `execute_turn` to the process's shared event loop
(`chat.turns.loop`) and waits for it. The worker runs the `threads` pool, so one
worker process holds many live turns on that one loop (the engine's awaits are
network-bound), and turn time limits are enforced here rather than by Celery
(the threads pool has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from chat.engine.request import TurnHooks, TurnRequest
from chat.services.messages import pending_unsaved
from chat.services.turns import turn_fail_orphaned
from chat.services.usage import turn_usage_fail_over
from copilot_site.core import metrics
from copilot_site.core.logs import log_context_turn_set
from copilot_site.core.sql import connection_released

from . import scripts as rs
from .loop import GIL_SWITCH_INTERVAL_S, quiet_gc, shared_loop
from .pending import PendingMessage, pending_drain, pending_requeue
from .registry import (
    STATUS_RUNNING,
    WORKER_LOST_ERROR,
    mark_session_completed_async,
    turn_meta_get_async,
)

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_ERROR = "A tool call appears to be stuck. The turn was stopped after 10 minutes without progress."
TIME_LIMIT_ERROR = "The turn exceeded the maximum duration."
STREAM_LOCKED_ERROR = "Another stream is already active for this session. Please wait or stop it."
ALIVE_REFRESH_S = 5.0
LOCK_REFRESH_S = 30.0
STOP_GRACE_S = 3.0
CANCEL_POLL_S = 0.5


@dataclass
class TurnOutcome:
    error: str | None = None
    stopped: bool = False
    ran: bool = False
    error_code: str = ""  # the engine's code of `error` (its `ErrorEvent.code`)


EngineFactory = Callable[[TurnRequest, TurnHooks], AsyncIterator[Any]]


def _default_engine(request: TurnRequest, hooks: TurnHooks) -> AsyncIterator[Any]:
    from chat.engine.turn import run_turn

    return run_turn(request, hooks)


async def execute_turn(request: TurnRequest, *, owner_token: str, engine: EngineFactory | None = None) -> TurnOutcome:
    """Run one turn end to end. Safe to call twice for the same request (redelivery)."""
    session_id = request.session_id
    turn_id = request.turn_id
    log_context_turn_set(turn_id=turn_id, session_id=session_id, user_id=request.user_id)
    client = rs.loop_redis()
    outcome = TurnOutcome()
    lock_key = rs.cluster_lock_key(session_id)
    if not await client.set(lock_key, owner_token, nx=True, ex=settings.COPILOT_CLUSTER_LOCK_TIMEOUT_S):
        owner = await client.get(lock_key)
        logger.warning("Session %s already running on worker %s", session_id, owner)
        return outcome
    try:
        meta = await turn_meta_get_async(client, session_id)
        if meta is None or meta.turn_id != turn_id or meta.status != STATUS_RUNNING:
            logger.info("Dropping stale turn %s of session %s (meta: %s)", turn_id, session_id, meta)
            return outcome
        if meta.started_at is not None:
            # A worker already started this turn and died (the task was redelivered):
            # what it persisted stays; the turn ends as failed so the session is usable.
            logger.warning("Turn %s was redelivered after its worker died; failing it", turn_id)
            await sync_to_async(connection_released(turn_fail_orphaned))(
                session_id=session_id, turn_id=turn_id, error=WORKER_LOST_ERROR
            )
            outcome.error = WORKER_LOST_ERROR
            metrics.turn_ended(failure_reason="worker_lost", stopped=False)
            return outcome
        pipe = client.pipeline(transaction=False)
        pipe.hset(rs.turn_meta_key(session_id), "started_at", f"{time.time():.6f}")
        pipe.set(rs.alive_key(session_id), turn_id, ex=rs.ALIVE_TTL_S)
        await pipe.execute()
        outcome = await metrics.turn_observed(_run_with_guards(client, request, owner_token, engine or _default_engine))
        metrics.turn_ended(failure_reason=_failure_reason(outcome), stopped=outcome.stopped)
        outcome.ran = True
    finally:
        await rs.async_compare_and_delete(client, lock_key, owner_token)
    return outcome


async def _run_with_guards(client: Any, request: TurnRequest, owner_token: str, engine: EngineFactory) -> TurnOutcome:
    session_id = request.session_id
    turn_id = request.turn_id
    outcome = TurnOutcome()
    stream_lock = rs.stream_lock_key(session_id)
    if not await client.set(stream_lock, turn_id, nx=True, ex=settings.COPILOT_STREAM_LOCK_TTL_S):
        outcome.error = STREAM_LOCKED_ERROR
        await mark_session_completed_async(
            client, session_id, turn_id=turn_id, user_id=request.user_id, error_message=outcome.error
        )
        return outcome
    cancel_event = asyncio.Event()
    guard = _TurnGuard(session_id, turn_id, owner_token, cancel_event, outcome)
    hooks = TurnHooks(
        cancel=cancel_event,
        drain_pending=_drain_hook(session_id),
        requeue_pending=_requeue_hook(session_id),
        keepalive=guard.touch,
    )
    stream = engine(request, hooks)
    publisher = _Publisher(turn_id, arrived_at=request.arrived_at or time.time())
    try:
        guard.start(time.monotonic() + settings.COPILOT_TURN_TIME_LIMIT_S)
        iterator = stream.__aiter__()
        while True:
            try:
                event = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                if not guard.interrupted:
                    raise  # the worker itself is stopping
                # Interrupted where the engine waited (LLM read, tool): its cleanup has
                # persisted the partial answer and the stop marker; close the blocks
                # listeners saw open.
                guard.uncancel()
                publisher.close_open_blocks()
                break
            guard.last_progress = guard.loop.time()
            if not _handle(event, publisher, outcome):
                break
    finally:
        guard.stop()
        # `async for`/break never closes an async generator: without this the engine
        # stays suspended holding its state, and its cleanup never runs.
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(redis.RedisError):
            await rs.async_compare_and_delete(client, stream_lock, turn_id)
    if outcome.error in (IDLE_TIMEOUT_ERROR, TIME_LIMIT_ERROR):
        await sync_to_async(connection_released(turn_usage_fail_over))(turn_id=turn_id, error=outcome.error)
    # Completion publishes after every chunk of this turn is in the log. The engine
    # has written the duration and the usage warning; this is one Redis call.
    await rs.loop_appender().drain()
    await mark_session_completed_async(
        client, session_id, turn_id=turn_id, user_id=request.user_id, error_message=outcome.error
    )
    return outcome


def _handle(event: Any, publisher: _Publisher, outcome: TurnOutcome) -> bool:
    """Publish one engine event; False when the stream is over."""
    chunk = event.to_wire() if hasattr(event, "to_wire") else dict(event)
    chunk_type = chunk.get("type")
    if chunk_type == "finish":
        return False
    if chunk_type == "error":
        # Completion publishes `error` then `finish`, after the status change.
        if outcome.error is None:
            outcome.error = str(chunk.get("errorText") or "Error")
            outcome.error_code = str(getattr(event, "code", "") or "")
        return True
    publisher.publish(chunk)
    return True


_TOKEN_TYPES = frozenset({"text-delta", "reasoning-delta"})
# What the runtime itself ends a turn with; an engine error is reported by its code.
_RUNTIME_FAILURES = {
    TIME_LIMIT_ERROR: "time_limit",
    IDLE_TIMEOUT_ERROR: "idle_timeout",
    STREAM_LOCKED_ERROR: "stream_locked",
}


def _failure_reason(outcome: TurnOutcome) -> str | None:
    """The `reason` label of a failed turn (None when it did not fail)."""
    if outcome.error is None:
        return None
    return _RUNTIME_FAILURES.get(outcome.error) or outcome.error_code or "error"


class _Publisher:
    """Appends a turn's chunks to its stream through the loop's batched appender.

    It also folds what it published, so a stop that had to interrupt the engine
    mid-block can still close those blocks for listeners (`close_open_blocks`).
    """

    def __init__(self, turn_id: str, *, arrived_at: float) -> None:
        from chat.engine.accumulator import EventAccumulator

        self.folded = EventAccumulator()
        self.appender = rs.loop_appender()
        self.turn_id = turn_id
        self.first_token_due = arrived_at  # 0 once the first token is out (time to first token)
        self.last_ms = 0
        self.count = 0

    def close_open_blocks(self) -> None:
        for event in self.folded.closing_events():
            self.publish(event.to_wire())

    def publish(self, chunk: dict[str, Any]) -> None:
        if self.first_token_due and chunk.get("type") in _TOKEN_TYPES:
            metrics.first_token_observe(arrived_at=self.first_token_due)
            self.first_token_due = 0.0
        self.folded.add_wire(chunk)
        # The chunk's log id: the append time in ms (never below the last one's) and the
        # chunk's number in the turn, so ids only grow and a resend keeps its id.
        self.last_ms = max(self.last_ms, int(time.time() * 1000))
        self.count += 1
        self.appender.append(self.turn_id, json.dumps(chunk, separators=(",", ":")), f"{self.last_ms}-{self.count}")


class _TurnGuard:
    """The limits of one running turn: stop, idle timeout, time limit.

    Nothing here runs per chunk but one timestamp: timers fire on the loop and,
    when the turn has to end, interrupt the engine where it waits by cancelling
    the turn's task (`interrupted` tells that cancellation from a worker shutdown).
    A stop first sets the engine's cancel event, which it sees between chunks and
    tools, and only interrupts it after STOP_GRACE_S.
    """

    def __init__(
        self, session_id: str, turn_id: str, owner_token: str, cancel: asyncio.Event, outcome: TurnOutcome
    ) -> None:
        self.session_id = session_id
        self.turn_id = turn_id
        self.owner_token = owner_token
        self.cancel = cancel
        self.outcome = outcome
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.interrupted = False
        self.stopping = False
        self.last_progress = self.loop.time()
        self.timers: list[asyncio.TimerHandle] = []
        # When the supervisor next refreshes this turn's liveness key and its locks (loop time).
        self.alive_due = self.locks_due = 0.0

    def start(self, deadline_monotonic: float) -> None:
        time_left = max(deadline_monotonic - time.monotonic(), 0)
        self.timers.append(self.loop.call_later(time_left, self._time_up))
        self.timers.append(self.loop.call_later(settings.COPILOT_STREAM_IDLE_TIMEOUT_S, self._check_idle))
        supervisor().add(self)

    def touch(self) -> None:
        """The engine is alive although it streams nothing (it waits for a tool approval)."""
        self.last_progress = self.loop.time()

    def stop(self) -> None:
        supervisor().remove(self)
        for timer in self.timers:
            timer.cancel()

    def on_cancel_flag(self) -> None:
        """The session's cancel flag names this turn (seen by the supervisor)."""
        if self.stopping or self.interrupted:
            return
        self.stopping = True
        self.outcome.stopped = True
        self.cancel.set()
        self.timers.append(self.loop.call_later(STOP_GRACE_S, self._interrupt))

    def _time_up(self) -> None:
        if not self.stopping:
            self.outcome.error = TIME_LIMIT_ERROR
            self.cancel.set()
            self._interrupt()

    def _check_idle(self) -> None:
        if self.stopping or self.interrupted:
            return
        idle_limit = float(settings.COPILOT_STREAM_IDLE_TIMEOUT_S)
        idle_for = self.loop.time() - self.last_progress
        if idle_for < idle_limit:
            self.timers.append(self.loop.call_later(idle_limit - idle_for, self._check_idle))
            return
        self.outcome.error = IDLE_TIMEOUT_ERROR
        self.cancel.set()
        self._interrupt()

    def _interrupt(self) -> None:
        if not self.interrupted and self.task is not None and not self.task.done():
            self.interrupted = True
            self.task.cancel()

    def uncancel(self) -> None:
        if self.task is not None:
            self.task.uncancel()


class _Supervisor:
    """Every live turn of one event loop, watched by one task instead of two per turn.

    Twice a second one MGET reads every turn's cancel flag (a stop lands well
    within its 5 s). In the same round, one pipeline refreshes the keys of the
    turns that are due: a turn's liveness key every ALIVE_REFRESH_S and its
    cluster lock (owner-checked), stream lock and meta TTL every LOCK_REFRESH_S,
    each counted from the turn's own start. The refreshes are so spread over the
    rounds as the turns started, instead of hundreds landing in one pipeline
    (which at 200 live turns stalled every stream of the loop for ~10 ms each
    time; `make bench`).
    """

    def __init__(self) -> None:
        self.guards: dict[str, _TurnGuard] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, guard: _TurnGuard) -> None:
        self.guards[guard.turn_id] = guard
        guard.alive_due = guard.loop.time() + ALIVE_REFRESH_S
        guard.locks_due = guard.loop.time() + LOCK_REFRESH_S
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, guard: _TurnGuard) -> None:
        if self.guards.get(guard.turn_id) is guard:
            del self.guards[guard.turn_id]

    async def _run(self) -> None:
        client = rs.loop_redis()
        loop = asyncio.get_running_loop()
        while self.guards:
            await asyncio.sleep(CANCEL_POLL_S)
            guards = list(self.guards.values())
            if not guards:
                break
            try:
                flags = await client.mget([rs.cancel_key(g.session_id) for g in guards])
                for guard, flag in zip(guards, flags, strict=True):
                    if flag is not None and flag.decode() == guard.turn_id:
                        guard.on_cancel_flag()
                await self._refresh_due(client, guards, loop.time())
            except redis.RedisError as exc:
                metrics.failure_count(exc)
                logger.warning("Turn supervisor could not reach Redis; retrying")
            except Exception:
                logger.exception("Turn supervisor failed a round; retrying")

    async def _refresh_due(self, client: Any, guards: list[_TurnGuard], now: float) -> None:
        pipe = client.pipeline(transaction=False)
        sent: list[_TurnGuard | None] = []  # per command: the guard of a lock refresh, None for liveness
        for guard in guards:
            if now >= guard.alive_due:
                guard.alive_due = now + ALIVE_REFRESH_S
                pipe.set(rs.alive_key(guard.session_id), guard.turn_id, ex=rs.ALIVE_TTL_S)
                sent.append(None)
            if now >= guard.locks_due:
                guard.locks_due = now + LOCK_REFRESH_S
                sent.append(guard)
                pipe.eval(
                    rs.REFRESH_TURN_LOCKS,
                    3,
                    rs.cluster_lock_key(guard.session_id),
                    rs.stream_lock_key(guard.session_id),
                    rs.turn_meta_key(guard.session_id),
                    guard.owner_token,
                    settings.COPILOT_CLUSTER_LOCK_TIMEOUT_S,
                    guard.turn_id,
                    settings.COPILOT_STREAM_LOCK_TTL_S,
                    rs.TURN_TTL_S,
                )
        if not sent:
            return
        results = await pipe.execute(raise_on_error=False)
        for owner, result in zip(sent, results, strict=True):
            if owner is not None and result != 1:
                logger.warning("Lost the cluster lock of session %s (%r)", owner.session_id, result)


supervisor = rs.per_loop(_Supervisor)


def _drain_hook(session_id: str) -> Callable[[], Awaitable[list[PendingMessage]]]:
    """The engine calls this at turn start, then at every tool-round boundary.

    At turn start everything queued joins the turn. At a round boundary only
    "send now" messages are taken; "next turn" ones go back, in order, for the
    next turn (auto-continue picks them up).
    """
    calls = 0

    async def drain() -> list[PendingMessage]:
        nonlocal calls
        calls += 1
        drained = await sync_to_async(connection_released(_drain_unsaved), thread_sensitive=False)(session_id)
        if calls == 1:
            return drained
        now = [m for m in drained if not m.next_turn]
        later = [m for m in drained if m.next_turn]
        if later:
            await sync_to_async(pending_requeue, thread_sensitive=False)(session_id, later)
        return now

    return drain


def _drain_unsaved(session_id: str) -> list[PendingMessage]:
    """Every queued follow-up but repeats of messages already saved (a retried send)."""
    return pending_unsaved(session_id, pending_drain(session_id))


def _requeue_hook(session_id: str) -> Callable[[list[PendingMessage]], Awaitable[None]]:
    async def requeue(messages: list[PendingMessage]) -> None:
        await sync_to_async(pending_requeue, thread_sensitive=False)(session_id, messages)

    return requeue


def warm_up() -> None:
    """Pay one-time costs before the first turn: imports, tiktoken's BPE tables, the loop.

    Called when a worker starts, so the first user of a fresh worker does not wait
    ~2 s for them (and other live turns do not stall while they load).
    """
    from django.conf import settings as django_settings

    from chat.engine import turn  # noqa: F401 - the imports are the warm-up
    from chat.engine.context import encoding_for
    from chat.engine.providers import anthropic, openai_compat  # noqa: F401
    from chat.tools.builtin import calculator, clock, memory, search_chats, web_fetch  # noqa: F401

    for model in {django_settings.COPILOT_MODEL, django_settings.COPILOT_ADVANCED_MODEL}:
        encoding_for(model).encode("warm up")
    loop = shared_loop.loop()
    # The operator's MCP servers start connecting now, in the background (chat.mcp.pool).
    from chat.mcp.tools import mcp_connections_warm

    asyncio.run_coroutine_threadsafe(mcp_connections_warm(), loop)
    # The turn loop shares the GIL with threads doing ORM work; CPython's default
    # 5 ms switch interval lets one such call delay every live stream by up to 5 ms.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    quiet_gc()
