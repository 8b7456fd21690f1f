"""The provider interface: one LLM round streamed as typed deltas."""

from __future__ import annotations

import functools
import math
import ssl
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from django.conf import settings

# Messages and tool schemas are OpenAI Chat Completions dicts; providers translate.
LLMMessage = dict[str, Any]
ToolSchema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of tool call ``index``: id and name when present, arguments to append."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class UsageDelta:
    """One round's usage. ``prompt_tokens`` includes cache reads and writes."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: float | None = None  # None: the provider reported no cost


@dataclass(frozen=True, slots=True)
class AssistantExtraDelta:
    """Provider data to send back on this round's assistant message in later rounds of the
    same turn (thinking blocks with signatures, OpenRouter ``reasoning_details``)."""

    fields: Mapping[str, Any] = field(default_factory=dict)


ProviderDelta = TextDelta | ReasoningDelta | ToolCallDelta | UsageDelta | AssistantExtraDelta


class LLMProvider(Protocol):
    name: str

    def stream_round(
        self,
        *,
        messages: Sequence[LLMMessage],
        tools: Sequence[ToolSchema],
        model: str,
        reasoning_budget: int,
    ) -> AsyncGenerator[ProviderDelta, None]:
        """Stream one completion. ``reasoning_budget`` > 0 asks for reasoning (already gated)."""
        ...

    async def complete(self, *, messages: Sequence[LLMMessage], model: str) -> str:
        """One non-streamed completion without tools (titles, summaries)."""
        ...

    async def aclose(self) -> None:
        """Release the HTTP client."""
        ...


def is_anthropic_route(model: str) -> bool:
    return model.startswith("anthropic/") or "claude" in model.lower()


def reasoning_budget_for(*, mode: str | None, model: str) -> int:
    """The thinking budget to request, or 0 for none.

    Only when the mode is extended_thinking, the kill switch is off and the model
    is an Anthropic route; the budget is clamped to 1024–128000.
    """
    budget = int(settings.COPILOT_MAX_THINKING_TOKENS)
    if (mode or settings.COPILOT_DEFAULT_MODE) != "extended_thinking" or budget <= 0:
        return 0
    if not is_anthropic_route(model):
        return 0
    return min(max(budget, 1024), 128_000)


def cache_control() -> dict[str, str]:
    ttl = settings.COPILOT_PROMPT_CACHE_TTL
    return {"type": "ephemeral", "ttl": ttl} if ttl == "1h" else {"type": "ephemeral"}


def _price(entry: Mapping[str, Any], key: str) -> float:
    value = entry.get(key, 0)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def price_table_cost_usd(
    *, model: str, prompt_tokens: int, completion_tokens: int, cache_read_tokens: int, cache_creation_tokens: int
) -> float | None:
    """Cost from ``COPILOT_MODEL_PRICES`` (USD per million tokens); None when the model has no entry."""
    prices: Mapping[str, Any] = settings.COPILOT_MODEL_PRICES or {}
    entry = prices.get(model)
    if entry is None and "/" in model:
        entry = prices.get(model.split("/", 1)[1])
    if not isinstance(entry, Mapping):
        return None
    uncached = max(0, prompt_tokens - cache_read_tokens - cache_creation_tokens)
    cost = (
        uncached * _price(entry, "input")
        + completion_tokens * _price(entry, "output")
        + cache_read_tokens * _price(entry, "cache_read")
        + cache_creation_tokens * _price(entry, "cache_write")
    ) / 1_000_000
    return cost if math.isfinite(cost) else None


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every provider client of the process.

    A client is made per turn (its connection pool belongs to the turn's event
    loop), and loading the CA bundle for each would cost ~40 ms per turn.
    """
    return httpx.create_ssl_context()
