"""The tool registry: every tool class by name, filtered by the operator's switches."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from .base import Tool

_REGISTRY: dict[str, type[Tool]] = {}


def register(tool_class: type[Tool]) -> type[Tool]:
    """Class decorator: make a tool available under its name."""
    if tool_class.name in _REGISTRY and _REGISTRY[tool_class.name] is not tool_class:
        raise ValueError(f"Tool {tool_class.name!r} is registered twice")
    _REGISTRY[tool_class.name] = tool_class
    return tool_class


def registered_tools() -> dict[str, type[Tool]]:
    return dict(_REGISTRY)


def tool_cost_cents(tool: type[Tool] | Tool) -> int:
    """The credit price of one run: ``COPILOT_TOOL_COST_CENTS`` overrides the tool's own."""
    overrides: dict[str, Any] = settings.COPILOT_TOOL_COST_CENTS or {}
    value = overrides.get(tool.name, tool.cost_cents)
    return max(0, int(value))


def enabled_tools(*, authenticated: bool = True) -> list[Tool]:
    """Instances of the tools a turn may offer, in registration order.

    Skipped: tools the operator disabled (``COPILOT_DISABLED_TOOLS``), tools that
    need a user when there is none, and paid tools while credits are off.
    """
    disabled = set(settings.COPILOT_DISABLED_TOOLS or [])
    tools: list[Tool] = []
    for name, tool_class in _REGISTRY.items():
        if name in disabled:
            continue
        if tool_class.requires_auth and not authenticated:
            continue
        if tool_cost_cents(tool_class) > 0 and not settings.ENABLE_CREDIT:
            continue
        tools.append(tool_class())
    return tools


def tool_schemas(tools: list[Tool]) -> list[dict[str, Any]]:
    return [tool.schema() for tool in tools]


def schema_size_chars(schemas: list[dict[str, Any]]) -> int:
    """The size the tool schemas add to every request (the budget is test-enforced)."""
    return len(json.dumps(schemas, separators=(",", ":")))
