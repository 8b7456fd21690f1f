"""Chat's Celery tasks: thin adapters that take ids and call a service."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.dispatch import receiver

from chat.signals import attachment_deleted, session_first_message_saved

logger = logging.getLogger(__name__)


@shared_task(name="chat.generate_title", ignore_result=True)
def generate_title(session_id: str) -> None:
    """Give a session a short title from its first user message, if it still has none.

    Idempotent: the title is written with a conditional UPDATE, so a second run
    (redelivery) changes nothing. A failure is logged and never affects the chat.
    """
    from chat.engine.titles import session_title_generate

    try:
        session_title_generate(session_id=session_id)
    except Exception:
        logger.warning("Title generation failed for session %s", session_id, exc_info=True)


@receiver(session_first_message_saved, dispatch_uid="chat.tasks.title_enqueue")
def _title_enqueue(sender: object, session_id: str, **kwargs: Any) -> None:
    """A session's first user message was saved (after commit): name the session."""
    generate_title.delay(session_id)


@shared_task(name="chat.run_turn", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_turn(self: Any, payload: dict[str, Any]) -> None:
    """Run one chat turn; the payload is a `TurnRequest` that `chat.turns.dispatch` built.

    Idempotent, because the broker delivers a task again when the worker that held
    it died, and (Redis) when it stays unacknowledged past the visibility timeout
    even though its worker is alive: the turn registry decides. The task runs the
    turn only while the session's claim names this turn and no live worker has
    started it; a copy for a turn that is over, superseded or running elsewhere is
    logged, acknowledged and dropped (`execute_turn` repeats the check under the
    session's cluster lock, so two copies never both run).

    Then, after a turn that completed normally, start the next one if follow-ups
    are still queued (auto-continue; never after a failure or a stop).
    """
    from copilot_site.core.sql import connection_release

    from .engine.request import TurnRequest
    from .turns.dispatch import turn_auto_continue
    from .turns.loop import shared_loop
    from .turns.runtime import execute_turn

    request = TurnRequest.from_payload(payload)
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    reason = turn_task_drop_reason(session_id=request.session_id, turn_id=request.turn_id)
    if reason is not None:
        logger.info(
            "Dropping the task of turn %s (session %s%s): %s",
            request.turn_id,
            request.session_id,
            ", redelivered" if redelivered else "",
            reason,
        )
        return
    if redelivered:
        logger.warning("Turn %s of session %s was redelivered; running it here", request.turn_id, request.session_id)
    owner = f"{self.request.hostname}:{self.request.id}"
    connection_release()  # the task's thread only waits for the turn: it needs no connection
    outcome = shared_loop.run(execute_turn(request, owner_token=owner))
    if outcome.ran and outcome.error is None and not outcome.stopped:
        turn_auto_continue(session_id=request.session_id)


@shared_task(name="chat.recover_unsaved_turns", bind=True, max_retries=None, ignore_result=True)
def recover_unsaved_turns(self: Any) -> None:
    """Save the streamed answers whose end-of-turn write failed; again later while the
    database is still unavailable, until the turns' streams expire."""
    from .services.turns import RECOVER_MAX_RETRIES, RECOVER_RETRY_S, turns_recover_unsaved

    if turns_recover_unsaved() and self.request.retries < RECOVER_MAX_RETRIES:
        raise self.retry(countdown=RECOVER_RETRY_S)


def turn_task_drop_reason(*, session_id: str, turn_id: str) -> str | None:
    """Why a task for this turn must not run (None when it should): the turn is no
    longer the session's running one, or a live worker is running it."""
    from .turns import scripts as rs
    from .turns.registry import turn_meta_get

    meta = turn_meta_get(session_id)
    if meta is None or meta.turn_id != turn_id:
        return "the turn is no longer the session's current one"
    if not meta.is_running:
        return f"the turn has already ended ({meta.status})"
    if meta.started_at is not None and rs.redis_client().exists(rs.alive_key(session_id)):
        return "a live worker is running it"
    return None


@worker_ready.connect
def _warm_up_worker(**kwargs: Any) -> None:
    """Load the engine before the first turn arrives (see chat.turns.runtime.warm_up)."""
    from .turns.runtime import warm_up

    try:
        started = time.monotonic()
        warm_up()
        logger.info("Worker warmed up in %.2fs", time.monotonic() - started)
    except Exception:
        logger.warning("Worker warm-up failed; the first turn will pay for it", exc_info=True)
    _purge_enqueue(None)


@receiver(attachment_deleted, dispatch_uid="chat.tasks.attachments_purge_enqueue")
def _purge_enqueue(sender: object, **kwargs: Any) -> None:
    """A file was deleted (or a worker started): purge the files deleted long enough ago."""
    try:
        attachments_purge.delay()
    except Exception:
        logger.warning("Could not enqueue the attachments purge; the next delete will", exc_info=True)


@shared_task(name="chat.attachments_purge", ignore_result=True)
def attachments_purge() -> None:
    """Purge files deleted more than COPILOT_ATTACHMENT_PURGE_AFTER_DAYS ago (rows and bytes),
    one batch; re-enqueues itself while a full batch went."""
    from chat.services.attachments import attachments_purge_deleted

    batch = 500
    if attachments_purge_deleted(batch_size=batch) == batch:
        attachments_purge.delay()
