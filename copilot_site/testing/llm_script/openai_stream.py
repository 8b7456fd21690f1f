"""A round in OpenAI Chat Completions format: streamed chunks or one completion."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from copilot_site.core.demo_llm.openai_wire import (
    chunk_payload,
    completion_id_new,
    tool_args_delta,
    tool_start_delta,
)
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


async def openai_stream(plan: Plan, writer: asyncio.StreamWriter, keep: bool) -> bool:
    rnd = plan.round
    completion_id = completion_id_new()
    created = int(time.time())
    model = plan.conversation.model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk_payload(completion_id, created, model, delta, finish)

    async def send(payload: object) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        await chunk_write(writer, f"data: {data}\n\n".encode())

    await stream_start(writer, keep, {"x-request-id": completion_id})
    events = content_events(rnd)
    for index, event in enumerate(events):
        if error_due(rnd, index):
            break
        await pace(rnd, index)
        delta = openai_delta(event, rnd)
        if index == 0:
            delta = {"role": "assistant", **delta}
        await send(chunk(delta))
    if rnd.error_after_chunks is not None:
        if not events:
            await pace(rnd, 0)
        return await stream_error(writer, rnd, {"error": stream_error_body(rnd)})

    if not events:
        await pace(rnd, 0)
    finish = "tool_calls" if rnd.tool_calls else "stop"
    final_delta: dict[str, Any] = {} if events else {"role": "assistant", "content": ""}
    await send(chunk(final_delta, finish))
    usage = compute_usage(rnd, plan.conversation.prompt_chars, completion_chars(events))
    if usage is not None:
        final = chunk({})
        final["choices"] = []
        final["usage"] = usage.openai()
        await send(final)
    await send("[DONE]")
    await stream_end(writer)
    return keep


async def openai_complete(plan: Plan, writer: asyncio.StreamWriter, keep: bool) -> bool:
    rnd = plan.round
    events = content_events(rnd)
    await generation_sleep(rnd, len(events))
    if rnd.error_after_chunks is not None:
        if rnd.error_mode == "disconnect":
            raise Abort
        return await json_send(writer, 502, {"error": stream_error_body(rnd)}, False)
    for event in events:
        event.resolve()
    payload: dict[str, Any] = {
        "id": completion_id_new(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.conversation.model,
        "choices": [
            {
                "index": 0,
                "message": _message(rnd, events),
                "finish_reason": "tool_calls" if rnd.tool_calls else "stop",
            }
        ],
    }
    usage = compute_usage(rnd, plan.conversation.prompt_chars, completion_chars(events))
    if usage is not None:
        payload["usage"] = usage.openai()
    return await json_send(writer, 200, payload, keep)


def _message(rnd: Round, events: list[Event]) -> dict[str, Any]:
    text = "".join(e.text for e in events if e.kind == "text")
    reasoning = "".join(e.text for e in events if e.kind == "reasoning")
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if reasoning or rnd.has_reasoning_raw:
        if rnd.reasoning_field == "reasoning_details" or rnd.has_reasoning_raw:
            details: Any = [{"type": "reasoning.text", "text": reasoning}] if reasoning else []
            message["reasoning_details"] = rnd.reasoning_raw if rnd.has_reasoning_raw else details
        if rnd.reasoning_field != "reasoning_details" and reasoning:
            message[rnd.reasoning_field] = reasoning
    if rnd.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in rnd.tool_calls
        ]
    return message


def openai_delta(event: Event, rnd: Round) -> dict[str, Any]:
    if event.kind == "reasoning":
        piece = event.resolve()
        if rnd.reasoning_field == "reasoning_details":
            return {"reasoning_details": [{"type": "reasoning.text", "text": piece}]}
        return {rnd.reasoning_field: piece}
    if event.kind == "reasoning_raw":
        return {"reasoning_details": event.raw}
    if event.kind == "text":
        return {"content": event.resolve()}
    call = rnd.tool_calls[event.tool_index]
    if event.kind == "tool_start":
        return tool_start_delta(event.tool_index, call.id, call.name)
    return tool_args_delta(event.tool_index, event.resolve())


def stream_error_body(rnd: Round) -> dict[str, Any]:
    return {"message": rnd.error_message, "code": 502}
