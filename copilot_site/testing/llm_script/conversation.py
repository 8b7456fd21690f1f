"""Request bodies of both APIs normalised into the demo model's :class:`Conversation`.

OpenAI Chat Completions bodies are read by the product's demo module; this adds
Anthropic Messages bodies, which only the scripted test server accepts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from copilot_site.core.demo_llm.conversation import (
    Api,
    Conversation,
    Message,
    ToolCallRef,
    ToolResult,
    content_chars,
    content_text,
    normalize_openai,
    request_model,
    tool_names_of,
)

__all__ = ["Api", "Conversation", "Message", "normalize", "normalize_anthropic", "normalize_openai"]


def normalize_anthropic(body: Mapping[str, Any]) -> Conversation:
    """Normalise an Anthropic Messages request body."""
    system = content_text(body.get("system"))
    chars = len(system)
    messages: list[Message] = []
    raw_messages = body.get("messages")
    for raw in raw_messages if isinstance(raw_messages, list) else []:
        if not isinstance(raw, Mapping):
            continue
        role = str(raw.get("role", "user"))
        content = raw.get("content")
        chars += content_chars(content)
        text = content_text(content)
        calls: list[ToolCallRef] = []
        results: list[ToolResult] = []
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, Mapping):
                    continue
                if block.get("type") == "tool_use":
                    calls.append(
                        ToolCallRef(
                            str(block.get("id", "")),
                            str(block.get("name", "")),
                            json.dumps(block.get("input", {})),
                        )
                    )
                elif block.get("type") == "tool_result":
                    results.append(
                        ToolResult(
                            str(block.get("tool_use_id", "")),
                            content_text(block.get("content")),
                        )
                    )
        messages.append(
            Message(
                role=role,
                text=text,
                tool_calls=tuple(calls),
                tool_results=tuple(results),
            )
        )
    thinking = body.get("thinking")
    wants_reasoning = isinstance(thinking, Mapping) and thinking.get("type") in (
        "enabled",
        "adaptive",
    )
    return Conversation(
        api="anthropic",
        model=request_model(body),
        stream=body.get("stream") is True,
        system=system,
        messages=tuple(messages),
        tool_names=tool_names_of(body.get("tools")),
        wants_reasoning=wants_reasoning,
        prompt_chars=chars,
    )


def normalize(body: Mapping[str, Any], api: Api) -> Conversation:
    return normalize_openai(body) if api == "openai" else normalize_anthropic(body)
