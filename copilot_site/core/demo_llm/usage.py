"""Token usage a reply reports: estimated from characters (four per token), priced like a mid-size model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    cost: float | None  # None: report usage without a cost key

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def openai(self) -> dict[str, Any]:
        details: dict[str, Any] = {"cached_tokens": self.cached_tokens}
        if self.cache_creation_tokens:
            details["cache_write_tokens"] = self.cache_creation_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": details,
        }
        if self.cost is not None:
            usage["cost"] = self.cost
        return usage

    @property
    def anthropic_input_tokens(self) -> int:
        """Uncached input: Anthropic's input_tokens excludes cache reads/writes."""
        return max(0, self.prompt_tokens - self.cached_tokens - self.cache_creation_tokens)


def tokens_estimate(chars: int) -> int:
    """At least one token, one per four characters."""
    return max(1, chars // CHARS_PER_TOKEN)


def cost_estimate(prompt_tokens: int, completion_tokens: int) -> float:
    """Dollars at $3 per million prompt tokens and $15 per million completion tokens."""
    return (prompt_tokens * 3 + completion_tokens * 15) / 1e6


def usage_estimate(prompt_chars: int, completion_chars: int) -> Usage:
    """The usage the demo model reports for a reply."""
    prompt, completion = tokens_estimate(prompt_chars), tokens_estimate(completion_chars)
    return Usage(prompt, completion, cached_tokens=0, cache_creation_tokens=0, cost=cost_estimate(prompt, completion))
