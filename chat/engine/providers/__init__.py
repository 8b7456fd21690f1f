"""LLM providers behind one interface, chosen by ``COPILOT_LLM_PROVIDER``."""

from __future__ import annotations

from django.conf import settings

from .base import (
    AssistantExtraDelta,
    LLMMessage,
    LLMProvider,
    ProviderDelta,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolSchema,
    UsageDelta,
    is_anthropic_route,
    price_table_cost_usd,
    reasoning_budget_for,
)


def get_provider(name: str | None = None) -> LLMProvider:
    """A new provider client (one per turn: its HTTP pool belongs to the running event loop)."""
    chosen = name or settings.COPILOT_LLM_PROVIDER
    if chosen == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider()
    if chosen == "openai_compat":
        from .openai_compat import OpenAICompatProvider

        return OpenAICompatProvider()
    raise ValueError(f"Unknown COPILOT_LLM_PROVIDER {chosen!r}")


__all__ = [
    "AssistantExtraDelta",
    "LLMMessage",
    "LLMProvider",
    "ProviderDelta",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallDelta",
    "ToolSchema",
    "UsageDelta",
    "get_provider",
    "is_anthropic_route",
    "price_table_cost_usd",
    "reasoning_budget_for",
]
