"""Tools the model can call: the registry, execution and the built-ins."""

from __future__ import annotations

from . import builtin  # noqa: F401  (registers the built-in tools)
from .approval import ApprovalReason, approval_policy_register, approval_reason
from .base import Tool, ToolContext, ToolError, ToolImage, ToolOutput, ToolResultWithImages, validate_arguments
from .execution import ToolRunResult, charge_tool_run, execute_tool, failed, tool_preflight, truncate_output
from .registry import enabled_tools, register, registered_tools, schema_size_chars, tool_cost_cents, tool_schemas

__all__ = [
    "ApprovalReason",
    "approval_policy_register",
    "approval_reason",
    "failed",
    "tool_preflight",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolImage",
    "ToolOutput",
    "ToolResultWithImages",
    "ToolRunResult",
    "charge_tool_run",
    "enabled_tools",
    "execute_tool",
    "register",
    "registered_tools",
    "schema_size_chars",
    "tool_cost_cents",
    "tool_schemas",
    "truncate_output",
    "validate_arguments",
]
