"""Server-sent events in the AI SDK UI message stream protocol, v1.

Each chunk is `id: <event id>` + `data: <json>` + a blank line; heartbeats are
`: heartbeat` comments; the stream ends with `data: [DONE]`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse

from .follow import ListenerDisconnected, StreamItem, follow_turn

logger = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
}


def sse_data(item: StreamItem) -> str:
    """A chunk's `data:` payload: a stored chunk as the JSON text the worker wrote
    (compact, already checked), any other chunk encoded compactly."""
    return item.raw.decode() if item.raw is not None else json.dumps(item.chunk, separators=(",", ":"))


def sse_frame(item: StreamItem) -> bytes:
    if item.is_heartbeat:
        return b": heartbeat\n\n"
    data = sse_data(item)
    if item.event_id:
        return f"id: {item.event_id}\ndata: {data}\n\n".encode()
    return f"data: {data}\n\n".encode()


async def sse_body(session_id: str, *, after: str | None = None, turn_id: str | None = None) -> AsyncIterator[bytes]:
    # A client disconnect cancels this generator; closing follow_turn ends its
    # live subscription at once. The turn itself is untouched. A listener closed by
    # `DELETE …/stream` ends without `[DONE]`, as a dropped connection would: the turn
    # has not finished, and a client may re-attach with `GET …/stream`.
    try:
        async with contextlib.aclosing(follow_turn(session_id, after=after, turn_id=turn_id)) as items:
            async for item in items:
                yield sse_frame(item)
                if item.is_terminal:
                    break
    except ListenerDisconnected:
        return
    except Exception:
        # Never an exception out of a started response: the client gets an end it understands.
        logger.exception("Relay of session %s to an SSE client failed", session_id)
        for chunk in ({"type": "error", "errorText": "Stream error."}, {"type": "finish"}):
            yield sse_frame(StreamItem(None, turn_id or "", chunk))
    yield b"data: [DONE]\n\n"


def sse_response(session_id: str, *, after: str | None = None, turn_id: str | None = None) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        sse_body(session_id, after=after, turn_id=turn_id), content_type="text/event-stream"
    )
    for name, value in SSE_HEADERS.items():
        response[name] = value
    return response
