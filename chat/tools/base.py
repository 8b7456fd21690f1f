"""What a tool is: a name, a JSON schema, a price, and an async ``run``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class ToolImage:
    """An image a tool produced: its media type and base64 data."""

    media_type: str
    data: str


@dataclass(frozen=True)
class ToolResultWithImages:
    """What a tool returns when it produced images (MCP tools): ``output`` is the tool output
    as usual (on the wire, in the row, to every model); ``images`` also go to the model as
    image parts of the tool result where the provider takes them (Anthropic), in this turn."""

    output: str | dict[str, Any] | list[Any]
    images: tuple[ToolImage, ...]


ToolOutput = str | dict[str, Any] | list[Any] | ToolResultWithImages


class ToolError(Exception):
    """A tool's expected, user-facing failure: its message becomes the failed output."""


@dataclass(frozen=True)
class ToolContext:
    """What a running tool may use. ``user`` is the turn's user (None for anonymous runs)."""

    user: Any
    session_id: str
    turn_id: str
    tool_call_id: str
    cancel: asyncio.Event | None = None

    @property
    def is_cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


class Tool:
    """Base class of every tool. Subclasses set the class attributes and implement ``run``.

    Parameter bounds belong in the schema (``minimum``/``maximum``/``maxLength``),
    never as "max N" prose in the description: the model copies such numbers.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[Mapping[str, Any]] = {"type": "object", "properties": {}, "additionalProperties": False}
    cost_cents: ClassVar[int] = 0
    long_running: ClassVar[bool] = False
    requires_auth: ClassVar[bool] = False
    # Every call waits for the user's Approve / Deny (see chat/tools/approval.py). A tool
    # source with a stored per-tool policy (MCP) sets it on the instance it builds.
    requires_approval: bool = False

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        raise NotImplementedError

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The OpenAI-format tool definition sent to the model."""
        return {
            "type": "function",
            "function": {"name": cls.name, "description": cls.description, "parameters": dict(cls.parameters)},
        }


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    return True


def validate_arguments(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Check arguments against a flat object schema and fill defaults; raises ToolError.

    Covers what the built-in schemas use: required, type, enum, minimum/maximum,
    minLength/maxLength and additionalProperties: false.
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    problems: list[str] = []
    result: dict[str, Any] = {}
    for name in schema.get("required", []):
        if name not in arguments:
            problems.append(f"'{name}' is required")
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is None:
            if schema.get("additionalProperties") is False:
                problems.append(f"unexpected argument '{name}'")
            continue
        expected = spec.get("type")
        if isinstance(expected, str) and not _type_ok(expected, value):
            problems.append(f"'{name}' must be of type {expected}")
            continue
        if "enum" in spec and value not in spec["enum"]:
            problems.append(f"'{name}' must be one of {spec['enum']}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in spec and value < spec["minimum"]:
                problems.append(f"'{name}' must be ≥ {spec['minimum']}")
            if "maximum" in spec and value > spec["maximum"]:
                problems.append(f"'{name}' must be ≤ {spec['maximum']}")
        if isinstance(value, str):
            if "minLength" in spec and len(value) < spec["minLength"]:
                problems.append(f"'{name}' must have at least {spec['minLength']} characters")
            if "maxLength" in spec and len(value) > spec["maxLength"]:
                problems.append(f"'{name}' must have at most {spec['maxLength']} characters")
        result[name] = value
    if problems:
        raise ToolError("Invalid arguments: " + "; ".join(problems) + ".")
    for name, spec in properties.items():
        if name not in result and "default" in spec:
            result[name] = spec["default"]
    return result
