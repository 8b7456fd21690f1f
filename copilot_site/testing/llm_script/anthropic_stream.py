"""A round in Anthropic Messages format: streamed events (content blocks) or one message."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from typing import Any

from copilot_site.core.demo_llm.usage import Usage
from copilot_site.testing.llm_script.events import (
    Event,
    completion_chars,
    content_events,
    error_due,
    generation_sleep,
    pace,
    stream_error,
)
from copilot_site.testing.llm_script.http import Abort, chunk_write, json_send, stream_end, stream_start
from copilot_site.testing.llm_script.script import Plan, Round, compute_usage

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class _Blocks:
    """The stream's content blocks: at most one open, closed (signed, for thinking) before the next."""

    def __init__(self, writer: asyncio.StreamWriter, rnd: Round) -> None:
        self.writer = writer
        self.rnd = rnd
        self.index = -1
        self.open_kind: str | None = None

    async def send(self, event: str, payload: dict[str, Any]) -> None:
        data = json.dumps({"type": event, **payload})
        await chunk_write(self.writer, f"event: {event}\ndata: {data}\n\n".encode())

    async def delta(self, delta: dict[str, Any]) -> None:
        await self.send("content_block_delta", {"index": self.index, "delta": delta})

    async def close(self) -> None:
        if self.open_kind == "reasoning":
            signature = self.rnd.signature or _signature(self.rnd.reasoning or "")
            await self.delta({"type": "signature_delta", "signature": signature})
        if self.open_kind is not None:
            await self.send("content_block_stop", {"index": self.index})
        self.open_kind = None

    async def open(self, kind: str, block: dict[str, Any]) -> None:
        await self.close()
        self.index += 1
        self.open_kind = kind
        await self.send("content_block_start", {"index": self.index, "content_block": block})

    async def event_send(self, event: Event) -> None:
        """One content event: a delta of the open block, opening the right block first."""
        if event.kind == "reasoning":
            if self.open_kind != "reasoning":
                await self.open("reasoning", {"type": "thinking", "thinking": "", "signature": ""})
            await self.delta({"type": "thinking_delta", "thinking": event.resolve()})
        elif event.kind == "reasoning_raw":
            data = event.raw if isinstance(event.raw, str) else json.dumps(event.raw)
            await self.open("redacted", {"type": "redacted_thinking", "data": data})
        elif event.kind == "text":
            if self.open_kind != "text":
                await self.open("text", {"type": "text", "text": ""})
            await self.delta({"type": "text_delta", "text": event.resolve()})
        elif event.kind == "tool_start":
            call = self.rnd.tool_calls[event.tool_index]
            await self.open("tool", {"type": "tool_use", "id": call.id, "name": call.name, "input": {}})
        else:  # tool_args of the open tool_use block
            await self.delta({"type": "input_json_delta", "partial_json": event.resolve()})


async def anthropic_stream(plan: Plan, writer: asyncio.StreamWriter, keep: bool) -> bool:
    rnd = plan.round
    message_id = f"msg_{secrets.token_hex(12)}"
    start_usage = compute_usage(rnd, plan.conversation.prompt_chars, 0)
    blocks = _Blocks(writer, rnd)

    await stream_start(writer, keep, {"request-id": message_id})
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": plan.conversation.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": anthropic_input_usage(start_usage, output_tokens=1),
    }
    await blocks.send("message_start", {"message": message})
    await blocks.send("ping", {})

    events = content_events(rnd)
    for index, event in enumerate(events):
        if error_due(rnd, index):
            break
        await pace(rnd, index)
        await blocks.event_send(event)

    if rnd.error_after_chunks is not None:
        if not events:
            await pace(rnd, 0)
        return await stream_error(writer, rnd, anthropic_error(502, rnd.error_message), event="error")

    if not events:
        await pace(rnd, 0)
    await blocks.close()
    usage = compute_usage(rnd, plan.conversation.prompt_chars, completion_chars(events))
    stop = {"stop_reason": "tool_use" if rnd.tool_calls else "end_turn", "stop_sequence": None}
    await blocks.send(
        "message_delta", {"delta": stop, "usage": {"output_tokens": usage.completion_tokens if usage else 0}}
    )
    await blocks.send("message_stop", {})
    await stream_end(writer)
    return keep


async def anthropic_complete(plan: Plan, writer: asyncio.StreamWriter, keep: bool) -> bool:
    rnd = plan.round
    events = content_events(rnd)
    await generation_sleep(rnd, len(events))
    if rnd.error_after_chunks is not None:
        if rnd.error_mode == "disconnect":
            raise Abort
        return await json_send(writer, 502, anthropic_error(502, rnd.error_message), False)
    for event in events:
        event.resolve()
    usage = compute_usage(rnd, plan.conversation.prompt_chars, completion_chars(events))
    payload = {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": plan.conversation.model,
        "content": _content(rnd, events),
        "stop_reason": "tool_use" if rnd.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": anthropic_input_usage(usage, output_tokens=usage.completion_tokens if usage else 0),
    }
    return await json_send(writer, 200, payload, keep)


def _content(rnd: Round, events: list[Event]) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    reasoning = "".join(e.text for e in events if e.kind == "reasoning")
    if reasoning:
        signature = rnd.signature or _signature(reasoning)
        content.append({"type": "thinking", "thinking": reasoning, "signature": signature})
    if rnd.has_reasoning_raw:
        raw = rnd.reasoning_raw
        content.append({"type": "redacted_thinking", "data": raw if isinstance(raw, str) else json.dumps(raw)})
    text = "".join(e.text for e in events if e.kind == "text")
    if text:
        content.append({"type": "text", "text": text})
    for call in rnd.tool_calls:
        try:
            parsed = json.loads(call.arguments) if call.arguments else {}
        except json.JSONDecodeError:
            parsed = {}
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": parsed if isinstance(parsed, dict) else {},
            }
        )
    return content


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def anthropic_input_usage(usage: Usage | None, output_tokens: int) -> dict[str, Any]:
    if usage is None:
        return {
            "input_tokens": 0,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
    return {
        "input_tokens": usage.anthropic_input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
    }


def _signature(reasoning: str) -> str:
    digest = hashlib.sha256(reasoning.encode()).digest()
    return base64.b64encode(b"fake-signature:" + digest).decode()
