"""What the chat's model picker says about the two models (the chat page and the account page
both show it; it lives beside the user's chat defaults).

The advanced model costs more per token, so the same question uses more of the user's
daily and weekly limits. When `COPILOT_MODEL_PRICES` prices both models, the note says
how many times more (from the input and output prices together); otherwise it says so
in words. Users never see dollars, only what it means for their limits.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def _price(model: str) -> float | None:
    prices: Any = settings.COPILOT_MODEL_PRICES
    entry = prices.get(model) if isinstance(prices, dict) else None
    if not isinstance(entry, dict):
        return None
    try:
        total = float(entry.get("input", 0)) + float(entry.get("output", 0))
    except (TypeError, ValueError):
        return None
    return total if total > 0 else None


def advanced_cost_note() -> str:
    """E.g. "about 5× the cost: uses your limits 5× faster", or the same in words."""
    standard, advanced = _price(settings.COPILOT_MODEL), _price(settings.COPILOT_ADVANCED_MODEL)
    if standard and advanced and advanced > standard:
        ratio = advanced / standard
        shown = f"{ratio:.0f}" if ratio >= 3 else f"{ratio:.1f}".rstrip("0").rstrip(".")
        return f"about {shown}× the cost: uses your limits {shown}× faster"
    return "costs more: uses your daily and weekly limits faster"
