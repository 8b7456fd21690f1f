"""Anthropic provider through ``anthropic.AsyncAnthropic`` (Messages API, extended thinking).

The engine speaks OpenAI-format messages; this module translates them to
Anthropic's (system parameter, ``tool_use`` / ``tool_result`` blocks, strict
role alternation) and maps the stream back to provider deltas. Anthropic
reports no cost, so the engine prices its usage from ``COPILOT_MODEL_PRICES``
(a model without a price there has no cost).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import anthropic
from django.conf import settings

from .base import (
    AssistantExtraDelta,
    LLMMessage,
    ProviderDelta,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolSchema,
    UsageDelta,
    cache_control,
    shared_ssl_context,
)
from .transport import provider_transport

logger = logging.getLogger(__name__)

# The key under which an assistant message carries this round's thinking blocks back.
THINKING_BLOCKS_KEY = "anthropic_thinking"
COMPLETE_MAX_TOKENS = 1024


def api_model_name(model: str) -> str:
    """``anthropic/claude-sonnet-4-6`` (OpenRouter id) → ``claude-sonnet-4-6``."""
    return model.split("/", 1)[1] if model.startswith("anthropic/") else model


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def to_anthropic(messages: Sequence[LLMMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages) in Anthropic form; consecutive same-role messages are merged."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text(message.get("content"))
            if text:
                system.append({"type": "text", "text": text})
        elif role == "user":
            text = _text(message.get("content"))
            add("user", [{"type": "text", "text": text}] if text else [])
        elif role == "tool":
            result: Any = _text(message.get("content")) or "(empty)"
            if message.get("images"):  # a tool's images (MCP), as image blocks of its result
                result = [{"type": "text", "text": result}] + [
                    {"type": "image", "source": {"type": "base64", "media_type": i["media_type"], "data": i["data"]}}
                    for i in message["images"]
                ]
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": str(message.get("tool_call_id", "")),
                        "content": result,
                    }
                ],
            )
        elif role == "assistant":
            blocks: list[dict[str, Any]] = list(message.get(THINKING_BLOCKS_KEY) or [])
            text = _text(message.get("content"))
            if text:
                blocks.append({"type": "text", "text": text})
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": function.get("name", ""),
                        "input": _arguments(function.get("arguments")),
                    }
                )
            add("assistant", blocks)
    return system, out


def to_anthropic_tools(tools: Sequence[ToolSchema]) -> list[dict[str, Any]]:
    converted = []
    for tool in tools:
        function = tool.get("function", tool)
        converted.append(
            {
                "name": function["name"],
                "description": function.get("description", ""),
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return converted


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url or settings.ANTHROPIC_BASE_URL,
            api_key=api_key or settings.ANTHROPIC_API_KEY or "missing-key",
            max_retries=settings.COPILOT_LLM_MAX_RETRIES if max_retries is None else max_retries,
            timeout=settings.COPILOT_LLM_TIMEOUT_S if timeout is None else timeout,
            http_client=anthropic.DefaultAsyncHttpxClient(transport=provider_transport(shared_ssl_context())),
        )
        self._tools_source: Sequence[ToolSchema] | None = None
        self._tools_marked: list[dict[str, Any]] = []

    async def aclose(self) -> None:
        await self._client.close()

    def _marked_tools(self, tools: Sequence[ToolSchema]) -> list[dict[str, Any]]:
        """Converted once per tool list, with a cache marker on the last schema (a copy)."""
        if tools is not self._tools_source:
            converted = to_anthropic_tools(tools)
            if converted:
                converted[-1] = {**converted[-1], "cache_control": cache_control()}
            self._tools_source, self._tools_marked = tools, converted
        return self._tools_marked

    async def stream_round(
        self,
        *,
        messages: Sequence[LLMMessage],
        tools: Sequence[ToolSchema],
        model: str,
        reasoning_budget: int,
    ) -> AsyncGenerator[ProviderDelta, None]:
        system, anthropic_messages = to_anthropic(messages)
        if system:
            system[-1] = {**system[-1], "cache_control": cache_control()}
        kwargs: dict[str, Any] = {}
        max_tokens = int(settings.COPILOT_MAX_OUTPUT_TOKENS)
        if reasoning_budget > 0:
            kwargs["thinking"] = {"type": "enabled", "budget_tokens": reasoning_budget}
            max_tokens = max(max_tokens, reasoning_budget + 4096)
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = self._marked_tools(tools)
        # Events are read by their documented fields; the SDK's unions add nothing here.
        stream: Any = await self._client.messages.create(
            model=api_model_name(model),
            messages=anthropic_messages,  # type: ignore[arg-type]  # plain dicts of the API's shape
            max_tokens=max_tokens,
            stream=True,
            **kwargs,
        )
        input_tokens = cache_read = cache_creation = output_tokens = 0
        tool_index_of_block: dict[int, int] = {}
        thinking_blocks: list[dict[str, Any]] = []
        open_thinking: dict[str, Any] | None = None
        try:
            async for event in stream:
                kind = event.type
                if kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta":
                        if delta.text:
                            yield TextDelta(delta.text)
                    elif delta.type == "thinking_delta":
                        if delta.thinking:
                            if open_thinking is not None:
                                open_thinking["thinking"] += delta.thinking
                            yield ReasoningDelta(delta.thinking)
                    elif delta.type == "input_json_delta":
                        position = tool_index_of_block.get(event.index)
                        if position is not None and delta.partial_json:
                            yield ToolCallDelta(index=position, arguments=delta.partial_json)
                    elif delta.type == "signature_delta" and open_thinking is not None:
                        open_thinking["signature"] += delta.signature
                elif kind == "content_block_start":
                    block = event.content_block
                    if block.type == "tool_use":
                        position = len(tool_index_of_block)
                        tool_index_of_block[event.index] = position
                        yield ToolCallDelta(index=position, id=block.id, name=block.name)
                    elif block.type == "thinking":
                        open_thinking = {"type": "thinking", "thinking": "", "signature": ""}
                        thinking_blocks.append(open_thinking)
                    elif block.type == "redacted_thinking":
                        thinking_blocks.append({"type": "redacted_thinking", "data": block.data})
                elif kind == "content_block_stop":
                    open_thinking = None
                elif kind == "message_start":
                    usage = event.message.usage
                    input_tokens = usage.input_tokens or 0
                    cache_read = usage.cache_read_input_tokens or 0
                    cache_creation = usage.cache_creation_input_tokens or 0
                    output_tokens = usage.output_tokens or 0
                elif kind == "message_delta":
                    output_tokens = event.usage.output_tokens or output_tokens
        finally:
            await stream.close()
        if thinking_blocks:
            yield AssistantExtraDelta({THINKING_BLOCKS_KEY: thinking_blocks})
        prompt = input_tokens + cache_read + cache_creation
        yield UsageDelta(
            prompt_tokens=prompt,
            completion_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_creation,
            cost_usd=None,  # not reported: the engine prices it from COPILOT_MODEL_PRICES
        )

    async def complete(self, *, messages: Sequence[LLMMessage], model: str) -> str:
        system, anthropic_messages = to_anthropic(messages)
        kwargs: dict[str, Any] = {"system": system} if system else {}
        response = await self._client.messages.create(
            model=api_model_name(model),
            messages=anthropic_messages,  # type: ignore[arg-type]  # plain dicts of the API's shape
            max_tokens=COMPLETE_MAX_TOKENS,
            **kwargs,
        )
        return "".join(block.text for block in response.content if block.type == "text")
