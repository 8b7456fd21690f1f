"""A chat request normalised: OpenAI Chat Completions bodies map onto :class:`Conversation`.

Pure (no I/O): the demo model reads only this, and the scripted test server maps
Anthropic Messages bodies onto the same shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Api = Literal["openai", "anthropic"]

DEFAULT_MODEL = "fake-model"


@dataclass(frozen=True)
class ToolCallRef:
    """A tool call the assistant made earlier in the conversation."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult:
    """A tool result sent back by the client."""

    tool_call_id: str
    content: str


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant" | "tool"
    text: str
    tool_calls: tuple[ToolCallRef, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()


@dataclass(frozen=True)
class Conversation:
    api: Api
    model: str
    stream: bool
    system: str
    messages: tuple[Message, ...]
    tool_names: frozenset[str]
    wants_reasoning: bool
    prompt_chars: int


def content_text(content: object) -> str:
    """Text of a message content: a string or the concatenated text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") in (
                None,
                "text",
                "input_text",
            ):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "".join(parts)
    return ""


def content_chars(content: object) -> int:
    """All character data in a content value (text, tool results, ...)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(content_chars(part) for part in content)
    if isinstance(content, Mapping):
        total = 0
        for key in ("text", "content", "thinking", "partial_json"):
            if key in content:
                total += content_chars(content[key])
        if "input" in content:
            total += len(json.dumps(content["input"]))
        return total
    return 0


def tool_names_of(tools: object) -> frozenset[str]:
    names: set[str] = set()
    if isinstance(tools, list):
        for tool in tools:
            if not isinstance(tool, Mapping):
                continue
            function = tool.get("function")
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                names.add(function["name"])
            elif isinstance(tool.get("name"), str):
                names.add(tool["name"])
    return frozenset(names)


def request_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else DEFAULT_MODEL


def normalize_openai(body: Mapping[str, Any]) -> Conversation:
    """Normalise an OpenAI Chat Completions request body."""
    raw_messages = body.get("messages")
    messages: list[Message] = []
    system_parts: list[str] = []
    chars = 0
    for raw in raw_messages if isinstance(raw_messages, list) else []:
        if not isinstance(raw, Mapping):
            continue
        role = str(raw.get("role", ""))
        content = raw.get("content")
        text = content_text(content)
        chars += content_chars(content)
        if role in ("system", "developer"):
            system_parts.append(text)
            messages.append(Message(role="system", text=text))
        elif role == "tool":
            call_id = raw.get("tool_call_id")
            messages.append(
                Message(
                    role="tool",
                    text="",
                    tool_results=(ToolResult(str(call_id or ""), text),),
                )
            )
        elif role == "assistant":
            calls: list[ToolCallRef] = []
            raw_calls = raw.get("tool_calls")
            for call in raw_calls if isinstance(raw_calls, list) else []:
                if not isinstance(call, Mapping):
                    continue
                function = call.get("function")
                if not isinstance(function, Mapping):
                    continue
                arguments = function.get("arguments")
                args_text = arguments if isinstance(arguments, str) else json.dumps(arguments)
                chars += len(args_text)
                calls.append(
                    ToolCallRef(
                        str(call.get("id", "")),
                        str(function.get("name", "")),
                        args_text,
                    )
                )
            messages.append(Message(role="assistant", text=text, tool_calls=tuple(calls)))
        else:
            messages.append(Message(role=role or "user", text=text))
    reasoning = body.get("reasoning")
    wants_reasoning = reasoning is not None and reasoning is not False
    if isinstance(reasoning, Mapping):
        wants_reasoning = reasoning.get("enabled") is not False and reasoning.get("effort") != "none"
    return Conversation(
        api="openai",
        model=request_model(body),
        stream=body.get("stream") is True,
        system="\n".join(system_parts),
        messages=tuple(messages),
        tool_names=tool_names_of(body.get("tools")),
        wants_reasoning=wants_reasoning,
        prompt_chars=chars,
    )
