"""Chat's Celery tasks: thin adapters that take ids and call a service."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

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


@shared_task(name="chat.run_turn", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_turn(self: Any, payload: dict[str, Any]) -> None:
    """Run one chat turn; the payload is a `TurnRequest` that `chat.turns.dispatch` built.

    Then, after a turn that completed normally, start the next one if follow-ups
    are still queued (auto-continue; never after a failure or a stop).
    """
    from .engine.request import TurnRequest
    from .turns.dispatch import turn_auto_continue
    from .turns.loop import shared_loop
    from .turns.runtime import execute_turn

    request = TurnRequest.from_payload(payload)
    owner = f"{self.request.hostname}:{self.request.id}"
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
