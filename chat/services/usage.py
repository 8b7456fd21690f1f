"""Turn usage writes: the TurnUsage row, session totals and the spend counter."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from chat.models import ChatSession, TurnUsage
from copilot_site.core import sql
from ratelimits import services as ratelimit_services

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)


def turn_usage_create(*, turn_id: str, session: ChatSession, user: User) -> None:
    """The turn's record, made (outcome ``running``) in the transaction that saves its user rows."""
    TurnUsage.objects.create(turn_id=turn_id, session=session, user=user)


def turn_usage_fail(*, turn_id: str, error: str) -> None:
    """A turn that never finished (its worker is gone, it never started): failed, finished now.
    A record that already has an outcome keeps it."""
    TurnUsage.objects.filter(turn_id=turn_id, outcome=TurnUsage.Outcome.RUNNING).update(
        outcome=TurnUsage.Outcome.FAILED, error=error, finished_at=timezone.now()
    )


def turn_usage_fail_over(*, turn_id: str, error: str) -> None:
    """A turn the worker stopped at a limit (idle or total time): failed with `error`,
    whatever outcome the interrupted engine recorded."""
    TurnUsage.objects.filter(turn_id=turn_id).update(outcome=TurnUsage.Outcome.FAILED, error=error)


def turn_usage_start(
    *,
    turn_id: uuid.UUID | str,
    session_id: uuid.UUID | str,
    user_id: int | None,
    model: str,
    provider: str,
) -> None:
    """Put the model and provider on the turn's TurnUsage row (outcome ``running``).

    The dispatch creates the row with the user's message, so this is one UPDATE;
    a turn started without one (tests, old tasks) gets its row created here.
    """
    if TurnUsage.objects.filter(turn_id=turn_id).update(model=model, provider=provider):
        return
    TurnUsage.objects.get_or_create(
        turn_id=turn_id,
        defaults={"session_id": session_id, "user_id": user_id, "model": model, "provider": provider},
    )


def turn_usage_finish(
    *,
    turn_id: uuid.UUID | str,
    session_id: uuid.UUID | str,
    user: User | None,
    outcome: str,
    error: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_creation_tokens: int = 0,
    tokens_estimated: bool = False,
    cost_microdollars: int | None = None,
    cost_source: str = TurnUsage.CostSource.MISSING,
) -> int:
    """Complete the turn's row, add it to the session totals, record the spend; returns total tokens.

    Counts are clamped to ≥ 0. Estimated tokens are shown but never charged. The
    spend counter is fed only with a known, positive cost (``usage_record``
    handles Redis errors itself; anything else propagates).
    """
    prompt, completion = max(0, prompt_tokens), max(0, completion_tokens)
    cache_read, cache_creation = max(0, cache_read_tokens), max(0, cache_creation_tokens)
    total = prompt + completion
    charged = cost_microdollars if cost_microdollars is not None and not tokens_estimated else None
    if charged is not None and charged < 0:
        logger.warning("Negative turn cost %d microdollars for turn %s; rate limit skipped", charged, turn_id)
        charged = None
    # Hand-written statements (`copilot_site.core.sql`): this runs at the end of every turn.
    with transaction.atomic():
        sql.update(
            TurnUsage,
            where={"turn_id": turn_id},
            values={
                "outcome": outcome,
                "error": error[:2000],
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": total,
                "cache_read_tokens": cache_read,
                "cache_creation_tokens": cache_creation,
                "tokens_estimated": tokens_estimated,
                "cost_microdollars": charged,
                "cost_source": cost_source if charged is not None else TurnUsage.CostSource.MISSING,
                "finished_at": timezone.now(),
            },
        )
        sql.update(
            ChatSession,
            where={"id": session_id},
            add={
                "total_prompt_tokens": prompt,
                "total_completion_tokens": completion,
                "total_cache_read_tokens": cache_read,
                "total_cache_creation_tokens": cache_creation,
                "total_cost_microdollars": charged or 0,
            },
        )
    logger.info(
        "Turn usage: prompt=%d, completion=%d, total=%d, cost_usd=%s",
        prompt,
        completion,
        total,
        None if charged is None else charged / 1_000_000,
    )
    if user is not None and charged is not None and charged > 0:
        ratelimit_services.usage_record(user=user, microdollars=charged)
    return total
