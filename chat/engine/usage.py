"""A turn's token and cost totals."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chat.models import TurnUsage

from .providers.base import UsageDelta, price_table_cost_usd

logger = logging.getLogger(__name__)


@dataclass
class UsageTotals:
    """Summed over every round of a turn (``+=``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    reported_cost_usd: float = 0.0
    rounds_with_usage: int = 0
    rounds_with_cost: int = 0
    tokens_estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, usage: UsageDelta) -> None:
        self.prompt_tokens += max(0, usage.prompt_tokens)
        self.completion_tokens += max(0, usage.completion_tokens)
        self.cache_read_tokens += max(0, usage.cache_read_tokens)
        self.cache_creation_tokens += max(0, usage.cache_creation_tokens)
        self.rounds_with_usage += 1
        if usage.cost_usd is not None:
            self.reported_cost_usd += usage.cost_usd
            self.rounds_with_cost += 1


@dataclass(frozen=True)
class TurnCost:
    microdollars: int | None
    source: str  # TurnUsage.CostSource


def to_microdollars(cost_usd: float) -> int:
    return round(cost_usd * 1_000_000)


def turn_cost(totals: UsageTotals, *, model: str, provider: str, session_id: object) -> TurnCost:
    """Reported cost when every round reported one, else the price table, else missing (logged).

    Estimated tokens are never priced: they are for display only.
    """
    if totals.rounds_with_usage == 0:
        if totals.tokens_estimated:
            logger.error(
                "Turn of session %s on %s (%s) reported no usage: cost missing — rate limit skipped",
                session_id,
                model,
                provider,
            )
        return TurnCost(None, TurnUsage.CostSource.MISSING)
    if totals.rounds_with_cost == totals.rounds_with_usage:
        return TurnCost(to_microdollars(totals.reported_cost_usd), TurnUsage.CostSource.REPORTED)
    priced = price_table_cost_usd(
        model=model,
        prompt_tokens=totals.prompt_tokens,
        completion_tokens=totals.completion_tokens,
        cache_read_tokens=totals.cache_read_tokens,
        cache_creation_tokens=totals.cache_creation_tokens,
    )
    if priced is not None:
        return TurnCost(to_microdollars(priced), TurnUsage.CostSource.ESTIMATED)
    if totals.rounds_with_cost:
        # Some rounds reported a cost and others did not: charge what is known.
        logger.warning(
            "Partial cost for session %s (%s, %s): %d of %d rounds reported one",
            session_id,
            provider,
            model,
            totals.rounds_with_cost,
            totals.rounds_with_usage,
        )
        return TurnCost(to_microdollars(totals.reported_cost_usd), TurnUsage.CostSource.REPORTED)
    logger.error("Turn of session %s on %s (%s): cost missing — rate limit skipped", session_id, model, provider)
    return TurnCost(None, TurnUsage.CostSource.MISSING)


def turn_spent_microdollars(totals: UsageTotals, *, model: str, provider: str, session_id: object) -> int | None:
    """What the turn has spent so far (for its per-turn cap): the reported cost when any
    round reported one, else the price table's (None when neither is known)."""
    if totals.rounds_with_cost:
        return to_microdollars(totals.reported_cost_usd)
    return turn_cost(totals, model=model, provider=provider, session_id=session_id).microdollars
