"""OpenAI-compatible provider (OpenAI, OpenRouter, local servers) through ``openai.AsyncOpenAI``."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion

from chat.engine.reasoning import reasoning_text_from_extra

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
    is_anthropic_route,
    shared_ssl_context,
)
from .transport import provider_transport

logger = logging.getLogger(__name__)

PROMPT_CACHING_BETA = "prompt-caching-2024-07-31"


def validated_cost(value: Any) -> float | None:
    """The reported USD cost when usable, or None (logged) when it is not numeric, finite and ≥ 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        logger.error("cost_usd is not numeric (%r); rate limit skipped", value)
        return None
    cost = float(value)
    if not math.isfinite(cost):
        logger.error("cost_usd is not finite (%r); rate limit skipped", value)
        return None
    if cost < 0:
        logger.warning("cost_usd is negative (%r); rate limit skipped", value)
        return None
    return cost


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def usage_delta_from_openai(usage: Any) -> UsageDelta:
    extra: Mapping[str, Any] = usage.model_extra or {}
    details = usage.prompt_tokens_details
    cache_read = _int(getattr(details, "cached_tokens", 0)) if details is not None else 0
    details_extra: Mapping[str, Any] = (getattr(details, "model_extra", None) or {}) if details is not None else {}
    cache_write = _int(details_extra.get("cache_write_tokens", 0))
    return UsageDelta(
        prompt_tokens=_int(usage.prompt_tokens),
        completion_tokens=_int(usage.completion_tokens),
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_write,
        cost_usd=validated_cost(extra.get("cost")),
    )


# Fields of a chat.completion.chunk delta; anything else is a provider extension
# (reasoning, reasoning_content, reasoning_details, …).
_STANDARD_DELTA_KEYS = frozenset({"role", "content", "tool_calls", "function_call", "refusal"})


def usage_delta_from_dict(usage: Mapping[str, Any]) -> UsageDelta:
    """Usage from a raw chunk's ``usage`` object (OpenRouter adds ``cost`` in USD)."""
    details = usage.get("prompt_tokens_details") or {}
    return UsageDelta(
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        cache_read_tokens=_int(details.get("cached_tokens", 0)) if isinstance(details, Mapping) else 0,
        cache_creation_tokens=_int(details.get("cache_write_tokens", 0)) if isinstance(details, Mapping) else 0,
        cost_usd=validated_cost(usage.get("cost")),
    )


async def _sse_json(response: Any) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON objects of an SSE body: `data:` lines joined per event, `[DONE]` ends it.

    Reads the decoded body bytes (`httpx.Response.aiter_bytes`, so gzip still works)
    and splits lines itself: the text and line decoders of httpx and the SDK are three
    more async generator layers per chunk on the hot path. Lines end with LF, CRLF or
    a lone CR, as the SSE format allows.
    """
    data_lines: list[bytes] = []
    pending = b""  # an unfinished line
    after_cr = False  # the previous block ended with CR: a leading LF completes that CRLF
    async for block in response.http_response.aiter_bytes():
        if after_cr and block.startswith(b"\n"):
            block = block[1:]
        after_cr = block.endswith(b"\r")
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = (pending + block).split(b"\n") if pending else block.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                data_lines.append(line[5:].lstrip(b" "))
                continue
            if line or not data_lines:
                continue  # comments (": keep-alive"), event names, blank separators
            parsed = _event_json(data_lines)
            data_lines = []
            if parsed is _DONE:
                return
            if parsed is not None:
                yield parsed
    if pending.startswith(b"data:"):
        data_lines.append(pending[5:].lstrip(b" "))
    if data_lines:
        parsed = _event_json(data_lines)
        if parsed is not None and parsed is not _DONE:
            yield parsed


_DONE: Any = object()


def _event_json(data_lines: list[bytes]) -> Any:
    """One event's data as a JSON object; _DONE for `[DONE]`; None (logged) when unusable."""
    data = data_lines[0] if len(data_lines) == 1 else b"\n".join(data_lines)
    if data.startswith(b"[DONE]"):
        return _DONE
    try:
        parsed = json.loads(data)
    except ValueError:
        logger.warning("Skipping an unparseable stream event: %.200s", data)
        return None
    return parsed if isinstance(parsed, dict) else None


def _merge_reasoning_details(collected: list[dict[str, Any]], details: Any) -> None:
    """Fold streamed ``reasoning_details`` fragments into whole entries (by index), so the
    assistant message of a tool round can carry them back (signatures included)."""
    if not isinstance(details, list):
        return
    for raw in details:
        entry = raw if isinstance(raw, Mapping) else getattr(raw, "__dict__", None)
        if not isinstance(entry, Mapping):
            continue
        # Fragments without an index continue the latest entry of their type.
        index = entry.get("index", collected[-1]["index"] if collected else 0)
        target = next((c for c in collected if c["index"] == index and c.get("type") == entry.get("type")), None)
        if target is None:
            collected.append({**entry, "index": index})
            continue
        for key, value in entry.items():
            if key in ("text", "summary", "data") and isinstance(value, str):
                target[key] = str(target.get(key) or "") + value
            elif value is not None:
                target[key] = value


_ClientConfig = tuple[str, str, int, float]
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_ClientConfig, openai.AsyncOpenAI]] = (
    weakref.WeakKeyDictionary()
)


def _loop_client(config: _ClientConfig) -> openai.AsyncOpenAI:
    """One SDK client (and HTTP connection pool) per event loop and configuration.

    A worker runs every live turn on one loop, so turns reuse warm keep-alive
    connections instead of building a client, a TLS context and a connection each.
    Outside a running loop (a title task's `asyncio.run`) the client is built fresh.
    """
    base_url, api_key, max_retries, timeout = config

    def build() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=max_retries,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(transport=provider_transport(shared_ssl_context())),
        )

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return build()
    per_loop = _clients.setdefault(loop, {})
    if config not in per_loop:
        per_loop[config] = build()
    return per_loop[config]


def _without_images(message: LLMMessage) -> LLMMessage:
    if "images" not in message:
        return message
    return {key: value for key, value in message.items() if key != "images"}


class OpenAICompatProvider:
    name = "openai_compat"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> None:
        config = (
            base_url or settings.COPILOT_LLM_BASE_URL,
            api_key or settings.COPILOT_LLM_API_KEY or "missing-key",
            settings.COPILOT_LLM_MAX_RETRIES if max_retries is None else max_retries,
            settings.COPILOT_LLM_TIMEOUT_S if timeout is None else timeout,
        )
        self._client = _loop_client(config)
        self._tools_source: Sequence[ToolSchema] | None = None
        self._tools_marked: list[ToolSchema] = []

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client is shared by every turn on this event loop."""

    def _marked_tools(self, tools: Sequence[ToolSchema]) -> list[ToolSchema]:
        """A copy of the tool list whose last schema carries a cache marker (made once per list)."""
        if tools is not self._tools_source:
            marked = list(tools)
            if marked:
                marked[-1] = {**marked[-1], "cache_control": cache_control()}
            self._tools_source, self._tools_marked = tools, marked
        return self._tools_marked

    @staticmethod
    def _marked_messages(messages: Sequence[LLMMessage]) -> list[LLMMessage]:
        """The system message in content-block form with a cache marker; the rest untouched."""
        out = list(messages)
        if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
            block = {"type": "text", "text": out[0]["content"], "cache_control": cache_control()}
            out[0] = {**out[0], "content": [block]}
        return out

    async def stream_round(
        self,
        *,
        messages: Sequence[LLMMessage],
        tools: Sequence[ToolSchema],
        model: str,
        reasoning_budget: int,
    ) -> AsyncGenerator[ProviderDelta, None]:
        extra_body: dict[str, Any] = {"usage": {"include": True}}
        if reasoning_budget > 0:
            extra_body["reasoning"] = {"max_tokens": reasoning_budget}
        request_messages: Sequence[LLMMessage] = messages
        request_tools: Sequence[ToolSchema] = tools
        headers: dict[str, str] = {}
        if is_anthropic_route(model):
            request_messages = self._marked_messages(messages)
            request_tools = self._marked_tools(tools)
            headers["anthropic-beta"] = PROMPT_CACHING_BETA
        # Plain dicts of the API's shape (the SDK's TypedDicts are not worth mirroring).
        # Messages and tools go in `extra_body`, which the SDK merges into the JSON body
        # as given: its `messages=`/`tools=` path first walks every nested dict against
        # the TypedDict annotations (key aliases and file fields, none of which these
        # dicts use), ~1-3 ms of the worker's shared loop per round (`make bench`).
        # Chat Completions takes no images in tool messages: a tool's images stay behind.
        extra_body["messages"] = [_without_images(m) for m in request_messages]
        if request_tools:
            extra_body["tools"] = list(request_tools)
        request: dict[str, Any] = {
            "model": model,
            "messages": [],
            "stream": True,
            "stream_options": {"include_usage": True},
            "extra_body": extra_body,
            "extra_headers": headers or None,
        }
        # The SDK makes the request (auth, base URL, retries, error mapping); the stream's
        # SSE lines are parsed here as plain JSON, since building a pydantic chunk object
        # per delta is most of the per-chunk cost of a live turn.
        details: list[dict[str, Any]] = []
        async with self._client.chat.completions.with_streaming_response.create(**request) as response:
            async for chunk in _sse_json(response):
                error = chunk.get("error")
                if error:
                    message = error.get("message") if isinstance(error, Mapping) else None
                    raise openai.APIError(
                        message=str(message or "An error occurred during streaming"),
                        request=response.http_request,
                        body=error,
                    )
                usage = chunk.get("usage")
                if usage:
                    yield usage_delta_from_dict(usage)
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    extra = {key: value for key, value in delta.items() if key not in _STANDARD_DELTA_KEYS}
                    if extra:
                        reasoning = reasoning_text_from_extra(extra)
                        if reasoning:
                            yield ReasoningDelta(reasoning)
                        if "reasoning_details" in extra:
                            _merge_reasoning_details(details, extra["reasoning_details"])
                    content = delta.get("content")
                    if content:
                        yield TextDelta(content)
                    for call in delta.get("tool_calls") or ():
                        function = call.get("function") or {}
                        yield ToolCallDelta(
                            index=_int(call.get("index")),
                            id=call.get("id") or None,
                            name=function.get("name") or None,
                            arguments=function.get("arguments") or "",
                        )
        if details:
            yield AssistantExtraDelta({"reasoning_details": details})

    async def complete(self, *, messages: Sequence[LLMMessage], model: str) -> str:
        request: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "extra_body": {"usage": {"include": True}},
        }
        response: ChatCompletion = await self._client.chat.completions.create(**request)
        if not response.choices:
            return ""
        return response.choices[0].message.content or ""
