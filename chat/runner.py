"""Worker side of a turn: locks, liveness, cancel, publishing, completion (SPEC §4.9).

`execute_turn` runs inside the Celery task with `asyncio.run`. The worker runs
the `threads` pool, so one worker process holds many live turns (each thread
runs its own event loop; the engine's awaits are network-bound), and turn time
limits are enforced here rather than by Celery (the threads pool has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from . import redis_scripts as rs
from .turns import (
    STATUS_RUNNING,
    WORKER_LOST_ERROR,
    PendingMessage,
    mark_session_completed,
    pending_drain,
    pending_requeue,
    turn_fail_orphaned,
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
GIL_SWITCH_INTERVAL_S = 0.0005


@dataclass
class TurnOutcome:
    error: str | None = None
    stopped: bool = False
    ran: bool = False


EngineFactory = Callable[..., AsyncIterator[Any]]


def _default_engine(**kwargs: Any) -> AsyncIterator[Any]:
    from .engine.turn import run_turn

    return run_turn(**kwargs)


async def execute_turn(
    payload: dict[str, Any], *, owner_token: str, engine: EngineFactory | None = None
) -> TurnOutcome:
    """Run one turn end to end. Safe to call twice for the same payload (redelivery)."""
    session_id = str(payload["session_id"])
    turn_id = str(payload["turn_id"])
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
            await sync_to_async(turn_fail_orphaned)(session_id=session_id, turn_id=turn_id, error=WORKER_LOST_ERROR)
            outcome.error = WORKER_LOST_ERROR
            return outcome
        await client.hset(rs.turn_meta_key(session_id), "started_at", f"{time.time():.6f}")
        await client.set(rs.alive_key(session_id), turn_id, ex=rs.ALIVE_TTL_S)
        outcome = await _run_with_guards(client, payload, owner_token, engine or _default_engine)
        outcome.ran = True
    finally:
        await rs.async_compare_and_delete(client, lock_key, owner_token)
    return outcome


async def _run_with_guards(
    client: Any, payload: dict[str, Any], owner_token: str, engine: EngineFactory
) -> TurnOutcome:
    session_id = str(payload["session_id"])
    turn_id = str(payload["turn_id"])
    outcome = TurnOutcome()
    stream_lock = rs.stream_lock_key(session_id)
    if not await client.set(stream_lock, turn_id, nx=True, ex=settings.COPILOT_STREAM_LOCK_TTL_S):
        outcome.error = STREAM_LOCKED_ERROR
        await sync_to_async(mark_session_completed)(session_id, error_message=outcome.error, turn_id=turn_id)
        return outcome
    cancel_event = asyncio.Event()
    stop_reason: list[str] = []
    keepalive = asyncio.create_task(_keep_alive(client, session_id, turn_id, owner_token))
    watcher = asyncio.create_task(_watch_cancel(session_id, turn_id, cancel_event, stop_reason))
    stream = engine(
        session_id=session_id,
        user_id=payload["user_id"],
        turn_id=turn_id,
        mode=payload.get("mode"),
        model=payload.get("model"),
        page_context=payload.get("context"),
        cancel=cancel_event,
        drain_pending=_drain_hook(session_id),
        requeue_pending=_requeue_hook(session_id),
    )
    publisher = _Publisher(client, turn_id)
    deadline = time.monotonic() + settings.COPILOT_TURN_TIME_LIMIT_S
    try:
        iterator = stream.__aiter__()
        grace_deadline: float | None = None
        while True:
            now = time.monotonic()
            if grace_deadline is not None:
                wait_s = max(grace_deadline - now, 0)
            else:
                wait_s = min(settings.COPILOT_STREAM_IDLE_TIMEOUT_S, max(deadline - now, 0))
            next_event = asyncio.ensure_future(iterator.__anext__())
            waiters: set[asyncio.Future[Any]] = {next_event}
            stop_wait = None
            if grace_deadline is None:
                stop_wait = asyncio.ensure_future(cancel_event.wait())
                waiters.add(stop_wait)
            done, _ = await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            if stop_wait is not None:
                stop_wait.cancel()
            if next_event not in done:
                if grace_deadline is None and cancel_event.is_set():
                    # Stop: the engine watches the same event and closes its blocks,
                    # so let it finish on its own for a moment before interrupting it.
                    outcome.stopped = True
                    grace_deadline = time.monotonic() + STOP_GRACE_S
                    done, _ = await asyncio.wait({next_event}, timeout=STOP_GRACE_S)
                    if next_event in done:
                        if not await _handle(next_event, publisher, outcome):
                            break
                        continue
                elif grace_deadline is None:
                    outcome.error = TIME_LIMIT_ERROR if deadline - time.monotonic() <= 0 else IDLE_TIMEOUT_ERROR
                    cancel_event.set()
                # Interrupt the engine where it waits (LLM read, tool); its cleanup
                # persists the partial answer and the stop marker.
                next_event.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                    await next_event
                await publisher.close_open_blocks()
                break
            if not await _handle(next_event, publisher, outcome):
                break
    finally:
        # `async for`/break never closes an async generator: without this the engine
        # stays suspended holding its state, and its cleanup never runs.
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
        keepalive.cancel()
        watcher.cancel()
        for task in (keepalive, watcher):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(redis.RedisError):
            await rs.async_compare_and_delete(client, stream_lock, turn_id)
    if outcome.error is None:
        warning = await sync_to_async(_usage_warning)(payload["user_id"])
        if warning is not None:
            await publisher.publish({"type": "data-usage-warning", "data": warning})
    if outcome.stopped and outcome.error is None:
        await sync_to_async(mark_session_completed)(session_id, turn_id=turn_id)
    elif outcome.error in (IDLE_TIMEOUT_ERROR, TIME_LIMIT_ERROR):
        await sync_to_async(_note_failure)(session_id, turn_id, outcome.error)
        await sync_to_async(mark_session_completed)(session_id, error_message=outcome.error, turn_id=turn_id)
    else:
        await sync_to_async(mark_session_completed)(session_id, error_message=outcome.error, turn_id=turn_id)
    return outcome


async def _handle(next_event: asyncio.Future[Any], publisher: _Publisher, outcome: TurnOutcome) -> bool:
    """Publish one engine event; False when the stream is over."""
    try:
        event = next_event.result()
    except StopAsyncIteration:
        return False
    chunk = event.to_wire() if hasattr(event, "to_wire") else dict(event)
    chunk_type = chunk.get("type")
    if chunk_type == "finish":
        return False
    if chunk_type == "error":
        # Completion publishes `error` then `finish`, after the status change.
        if outcome.error is None:
            outcome.error = str(chunk.get("errorText") or "Error")
        return True
    await publisher.publish(chunk)
    return True


def _usage_warning(user_id: int) -> dict[str, Any] | None:
    """`data-usage-warning` payload the first time this turn pushed a window past 80 %."""
    from django.contrib.auth import get_user_model

    from ratelimits.services import consume_usage_warning

    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        return None
    warning = consume_usage_warning(user=user)
    return dict(warning) if warning is not None else None


def _note_failure(session_id: str, turn_id: str, error: str) -> None:
    from .models import TurnUsage

    TurnUsage.objects.filter(turn_id=turn_id).update(outcome=TurnUsage.Outcome.FAILED, error=error)


class _Publisher:
    """XADDs chunks to the turn's stream; a Redis failure never stops the turn.

    It also folds what it published, so a stop that had to interrupt the engine
    mid-block can still close those blocks for listeners (`close_open_blocks`).
    """

    def __init__(self, client: Any, turn_id: str) -> None:
        from .engine.accumulator import EventAccumulator

        self.folded = EventAccumulator()
        self.client = client
        self.key = rs.turn_stream_key(turn_id)
        self.turn_id = turn_id
        self.failures = 0
        self.expiry_set_at = 0.0

    async def close_open_blocks(self) -> None:
        for event in self.folded.closing_events():
            await self.publish(event.to_wire())

    async def publish(self, chunk: dict[str, Any]) -> None:
        self.folded.add_wire(chunk)
        try:
            await self.client.xadd(self.key, {"data": json.dumps(chunk, separators=(",", ":"))})
            now = time.monotonic()
            if now - self.expiry_set_at > 60:
                await self.client.expire(self.key, rs.TURN_TTL_S)
                self.expiry_set_at = now
        except redis.RedisError:
            self.failures += 1
            logger.warning(
                "[stream_and_publish] Failed to publish chunk %s for %s",
                chunk.get("type"),
                self.turn_id,
                exc_info=self.failures == 1,
            )


async def _keep_alive(client: Any, session_id: str, turn_id: str, owner_token: str) -> None:
    """Liveness every 5 s; the cluster lock (owner-checked) and key TTLs every 30 s."""
    last_lock_refresh = time.monotonic()
    while True:
        await asyncio.sleep(ALIVE_REFRESH_S)
        try:
            await client.set(rs.alive_key(session_id), turn_id, ex=rs.ALIVE_TTL_S)
            if time.monotonic() - last_lock_refresh >= LOCK_REFRESH_S:
                last_lock_refresh = time.monotonic()
                lock_ttl = settings.COPILOT_CLUSTER_LOCK_TIMEOUT_S
                if not await rs.async_compare_and_expire(
                    client, rs.cluster_lock_key(session_id), owner_token, lock_ttl
                ):
                    logger.warning("Lost the cluster lock of session %s", session_id)
                await rs.async_compare_and_expire(
                    client, rs.stream_lock_key(session_id), turn_id, settings.COPILOT_STREAM_LOCK_TTL_S
                )
                await client.expire(rs.turn_meta_key(session_id), rs.TURN_TTL_S)
        except redis.RedisError:
            logger.warning("Keep-alive refresh failed for session %s", session_id)


async def _watch_cancel(session_id: str, turn_id: str, cancel_event: asyncio.Event, reason: list[str]) -> None:
    """Set `cancel_event` once the session's cancel flag names this turn (polled twice a second).

    Polling one key on the shared connection costs far less than a pub/sub
    connection per live turn, and a stop still lands well within its 5 s.
    """
    client = rs.loop_redis()
    key = rs.cancel_key(session_id)
    expected = turn_id.encode()
    while not cancel_event.is_set():
        try:
            if await client.get(key) == expected:
                reason.append("user")
                cancel_event.set()
                return
        except redis.RedisError:
            logger.warning("Cancel watcher could not read Redis for session %s", session_id)
        await asyncio.sleep(CANCEL_POLL_S)


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
        drained = await sync_to_async(pending_drain, thread_sensitive=False)(session_id)
        if calls == 1:
            return drained
        now = [m for m in drained if not m.next_turn]
        later = [m for m in drained if m.next_turn]
        if later:
            await sync_to_async(pending_requeue, thread_sensitive=False)(session_id, later)
        return now

    return drain


def _requeue_hook(session_id: str) -> Callable[[list[PendingMessage]], Awaitable[None]]:
    async def requeue(messages: list[PendingMessage]) -> None:
        await sync_to_async(pending_requeue, thread_sensitive=False)(session_id, messages)

    return requeue


class _SharedLoop:
    """One event loop per worker process, on its own thread, running every live turn.

    Celery's `threads` pool hands each task a thread; that thread only submits the
    turn here and waits for it. With all turns on one loop the process multiplexes
    their network waits without threads contending for the GIL, which keeps
    per-chunk latency flat as the number of live turns grows.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="copilot-turns", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop()).result()


shared_loop = _SharedLoop()


def warm_up() -> None:
    """Pay one-time costs before the first turn: imports, tiktoken's BPE tables, the loop.

    Called when a worker starts, so the first user of a fresh worker does not wait
    ~2 s for them (and other live turns do not stall while they load).
    """
    from django.conf import settings as django_settings

    from .engine import turn  # noqa: F401 - the imports are the warm-up
    from .engine.context import encoding_for
    from .engine.providers import anthropic, openai_compat  # noqa: F401
    from .tools.builtin import calculator, clock, memory, search_chats, web_fetch  # noqa: F401

    for model in {django_settings.COPILOT_MODEL, django_settings.COPILOT_ADVANCED_MODEL}:
        encoding_for(model).encode("warm up")
    shared_loop.loop()
    # The turn loop shares the GIL with threads doing ORM work; CPython's default
    # 5 ms switch interval lets one such call delay every live stream by up to 5 ms.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
