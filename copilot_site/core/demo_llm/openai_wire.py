"""The OpenAI Chat Completions wire format of a demo reply: streamed deltas, a whole completion, errors."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from copilot_site.core.demo_llm.conversation import Conversation
from copilot_site.core.demo_llm.model import ARGS_CHUNK_CHARS, TEXT_CHUNK_CHARS, DemoReply, split_pieces
from copilot_site.core.demo_llm.usage import usage_estimate

MODELS = ("fake-model", "fake-model-large", "fake-claude")


def openai_error(status: int, message: str) -> dict[str, Any]:
    if status == 429:
        kind = "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return {"error": {"message": message, "type": kind, "code": status}}


def models_payload() -> dict[str, Any]:
    created = int(time.time())
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "fake-llm"} for model in MODELS],
    }


def completion_id_new() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def chunk_payload(
    completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with a single choice."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def tool_start_delta(index: int, call_id: str, name: str) -> dict[str, Any]:
    function = {"name": name, "arguments": ""}
    return {"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]}


def tool_args_delta(index: int, piece: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def reply_deltas(reply: DemoReply) -> tuple[list[dict[str, Any]], int]:
    """The content deltas of a streamed reply, and how many characters they generate."""
    deltas: list[dict[str, Any]] = []
    chars = 0
    for piece in split_pieces(reply.reasoning or "", TEXT_CHUNK_CHARS):
        deltas.append({"reasoning": piece})
        chars += len(piece)
    for piece in split_pieces(reply.text or "", TEXT_CHUNK_CHARS):
        deltas.append({"content": piece})
        chars += len(piece)
    for index, call in enumerate(reply.tool_calls):
        deltas.append(tool_start_delta(index, call.id, call.name))
        for piece in split_pieces(call.arguments, ARGS_CHUNK_CHARS):
            deltas.append(tool_args_delta(index, piece))
            chars += len(piece)
    return deltas, chars


def reply_stream(reply: DemoReply, conversation: Conversation) -> list[str]:
    """Every ``data:`` payload of a streamed reply, the final usage chunk and ``[DONE]`` included."""
    completion_id, created, model = completion_id_new(), int(time.time()), conversation.model
    deltas, chars = reply_deltas(reply)
    chunks = [chunk_payload(completion_id, created, model, delta) for delta in deltas]
    if chunks:
        chunks[0]["choices"][0]["delta"] = {"role": "assistant", **deltas[0]}
    finish = "tool_calls" if reply.tool_calls else "stop"
    final_delta: dict[str, Any] = {} if deltas else {"role": "assistant", "content": ""}
    chunks.append(chunk_payload(completion_id, created, model, final_delta, finish))
    usage_chunk = chunk_payload(completion_id, created, model, {})
    usage_chunk["choices"] = []
    usage_chunk["usage"] = usage_estimate(conversation.prompt_chars, chars).openai()
    chunks.append(usage_chunk)
    return [*(json.dumps(chunk) for chunk in chunks), "[DONE]"]


def reply_completion(reply: DemoReply, conversation: Conversation) -> dict[str, Any]:
    """A whole ``chat.completion`` for a non-streamed request."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.reasoning:
        message["reasoning"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in reply.tool_calls
        ]
    _, chars = reply_deltas(reply)
    return {
        "id": completion_id_new(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": conversation.model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
        "usage": usage_estimate(conversation.prompt_chars, chars).openai(),
    }
