"""Server-sent events in the AI SDK UI message stream protocol, v1.

Each chunk is `id: <event id>` + `data: <json>` + a blank line; heartbeats are
`: heartbeat` comments; the stream ends with `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.request import Request

from . import scripts as rs
from .follow import ListenerDisconnected, StreamItem, follow_turn
from .registry import turn_meta_get_async

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
                if item.is_terminal:
                    async for beat in _followup_hold(session_id):
                        yield beat
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


async def _followup_hold(session_id: str) -> AsyncIterator[bytes]:
    """Heartbeats while a follow-up stream of the session is open: a turn's stream sends its
    `finish` only once the follow-ups sent during it have been answered (or the session has
    been idle, nothing running and nothing queued, for FOLLOWUP_NEXT_TURN_WAIT_S).

    A stock `useChat` that sends a follow-up keeps reading the first turn's stream too, and
    shows `ready` as soon as that stream ends although its follow-up's stream still waits for
    the turn that answers it; held, the first stream ends with the follow-up's, so the chat
    stays `streaming` until every answer is in. A follow-up stream's record lapses
    rs.FOLLOWUP_STREAM_TTL_S after its last refresh, so one whose web process died holds
    nothing for long."""
    client = rs.loop_redis()
    if not await rs.async_followup_streams_open(client, session_id):
        return
    heartbeat_s = float(settings.COPILOT_SSE_HEARTBEAT_S)
    quiet_since = idle_since = time.monotonic()
    while await rs.async_followup_streams_open(client, session_id):
        meta = await turn_meta_get_async(client, session_id)
        busy = (meta is not None and meta.is_running) or bool(await client.llen(rs.pending_key(session_id)))
        now = time.monotonic()
        if busy:
            idle_since = now
        elif now - idle_since > FOLLOWUP_NEXT_TURN_WAIT_S:
            return  # a follow-up stream that was never closed (its web process died)
        if now - quiet_since >= heartbeat_s:
            yield b": heartbeat\n\n"
            quiet_since = now
        await asyncio.sleep(_FOLLOWUP_POLL_S)


def sse_response(session_id: str, *, after: str | None = None, turn_id: str | None = None) -> StreamingHttpResponse:
    return _streaming(sse_body(session_id, after=after, turn_id=turn_id))


def _streaming(body: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    for name, value in SSE_HEADERS.items():
        response[name] = value
    return response


# ---------------------------------------------------------------- content negotiation

STREAM_MEDIA_TYPE = "text/event-stream"
JSON_MEDIA_TYPE = "application/json"


def _accept_ranges(header: str) -> list[tuple[str, str, float]]:
    """`Accept` as (type, subtype, q) triples; a malformed q counts as 0, a malformed range is skipped."""
    ranges: list[tuple[str, str, float]] = []
    for part in header.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        main, slash, sub = media.lower().partition("/")
        if not slash or not main or not sub:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        ranges.append((main, sub, q))
    return ranges


def _quality(ranges: list[tuple[str, str, float]], media_type: str) -> float:
    """The q a media type gets: from the most specific range that matches it (exact, `type/*`, `*/*`)."""
    main, _, sub = media_type.partition("/")
    best: tuple[int, float] | None = None
    for r_main, r_sub, q in ranges:
        if (r_main, r_sub) == (main, sub):
            specificity = 2
        elif r_main == main and r_sub == "*":
            specificity = 1
        elif (r_main, r_sub) == ("*", "*"):
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, q)
    return best[1] if best is not None else 0.0


def accept_choice(header: str | None) -> str | None:
    """What a stream endpoint answers a request with this `Accept`: `"stream"` when the
    client accepts `text/event-stream` at all (no header, `*/*`, `text/*`, or any q > 0,
    whatever it prefers), `"json"` when it accepts `application/json` but not the stream,
    None when it accepts neither (406)."""
    if header is None or not header.strip():
        return "stream"
    ranges = _accept_ranges(header)
    if not ranges:
        return "stream"
    if _quality(ranges, STREAM_MEDIA_TYPE) > 0:
        return "stream"
    if _quality(ranges, JSON_MEDIA_TYPE) > 0:
        return "json"
    return None


class StreamContentNegotiation(BaseContentNegotiation):
    """Content negotiation of the stream endpoints, whose success is an SSE body the view
    builds itself, and whose other answers (errors, 202, 204) are JSON.

    DRF's default negotiation only knows the view's renderers (JSON), so it refused
    `Accept: text/event-stream` with 406, and it ignores q-values. This one records the
    choice on the request (`request.accepts_event_stream`) for the view and renders every
    `Response` as JSON; only an `Accept` that allows neither the stream nor JSON is 406.
    """

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        choice = accept_choice(request.META.get("HTTP_ACCEPT"))
        if choice is None:
            raise NotAcceptable(available_renderers=renderers)
        request.accepts_event_stream = choice == "stream"  # type: ignore[attr-defined]
        json_renderer = next((r for r in renderers if r.media_type == JSON_MEDIA_TYPE), renderers[0])
        return json_renderer, json_renderer.media_type


# ---------------------------------------------------------------- follow-ups as a stream

# How long a follow-up's stream waits, after a turn ends, for the turn that answers a
# message still queued (auto-continue claims it within moments).
FOLLOWUP_NEXT_TURN_WAIT_S = 10.0
_FOLLOWUP_POLL_S = 0.05
_FOLLOWUP_REFRESH_S = 5.0  # how often an open follow-up stream refreshes its record (rs.FOLLOWUP_STREAM_TTL_S)


@dataclass(frozen=True)
class StreamMark:
    """Where a session's running turn's log ended at a moment: its turn id and last entry id."""

    turn_id: str
    after: str | None


def stream_mark(session_id: str) -> StreamMark | None:
    """The running turn and its log's last entry, read before a follow-up is queued so its
    stream relays everything that follows; None when no turn runs."""
    from chat.services.turns import turn_running

    key = _session_key(session_id)
    if key is None:
        return None
    meta = turn_running(key)
    if meta is None:
        return None
    last = rs.redis_client().xrevrange(rs.turn_stream_key(meta.turn_id), count=1)
    after = last[0][0] if last else None
    return StreamMark(meta.turn_id, after.decode() if isinstance(after, bytes) else after)


def _session_key(session_id: object) -> str | None:
    try:
        return str(uuid.UUID(str(session_id)))
    except ValueError:
        return None


async def _still_queued(client: Any, session_id: str, message: str, client_message_id: str | None) -> bool:
    from .pending import PendingMessage

    for raw in await client.lrange(rs.pending_key(session_id), 0, -1):
        queued = PendingMessage.from_raw(raw)
        if queued is None:
            continue
        if (queued.client_message_id == client_message_id) if client_message_id else (queued.content == message):
            return True
    return False


async def followup_body(
    session_id: str,
    *,
    mark: StreamMark | None,
    position: int,
    message: str,
    client_message_id: str | None,
) -> AsyncIterator[bytes]:
    """The SSE body answering a follow-up queued while a turn runs.

    It starts with `data-queued` (`{"position": <buffer length>, "client_message_id": …}`),
    then relays, each from its `start`, every turn the session starts after the follow-up
    was queued, until no turn runs and the follow-up is no longer queued. The turn that was
    running (`mark`) is not relayed: the client already reads it on the stream that started
    it (a stock `useChat` keeps reading that stream into the earlier assistant message, so
    relaying it here showed its rest twice, and its first delta arrived without its
    `text-start`, which the SDK refuses). While that turn runs the stream stays open with
    heartbeats, so a client's `stop()` (which aborts its latest request) still reaches a live
    stream, also when that turn takes the follow-up at a tool-round boundary. Only the last
    relayed turn's `finish` is sent; the stream ends with a `finish` and `[DONE]`. After a
    turn ends it waits at most FOLLOWUP_NEXT_TURN_WAIT_S for the next one while the
    follow-up is still queued.
    """
    client = rs.loop_redis()
    queued = {"type": "data-queued", "data": {"position": position, "client_message_id": client_message_id}}
    yield sse_frame(StreamItem(None, mark.turn_id if mark else "", queued))
    seen: set[str] = set()
    finish: StreamItem | None = None
    heartbeat_s = float(settings.COPILOT_SSE_HEARTBEAT_S)
    token = uuid.uuid4().hex
    await rs.async_followup_stream_open(client, session_id, token)
    refresh_due = time.monotonic() + _FOLLOWUP_REFRESH_S

    async def refresh() -> None:
        nonlocal refresh_due
        if time.monotonic() >= refresh_due:
            refresh_due = time.monotonic() + _FOLLOWUP_REFRESH_S
            await rs.async_followup_stream_open(client, session_id, token)

    try:
        if mark is not None:
            # Follow the running turn to its end without relaying it: only its heartbeats
            # go out (follow_turn also notices a lost `finish` or a dead worker).
            seen.add(mark.turn_id)
            async with contextlib.aclosing(follow_turn(session_id, after=mark.after, turn_id=mark.turn_id)) as items:
                async for item in items:
                    await refresh()
                    if item.is_heartbeat:
                        yield sse_frame(item)
                    elif item.is_terminal:
                        break
        while True:
            turn_id: str | None = None
            deadline = time.monotonic() + FOLLOWUP_NEXT_TURN_WAIT_S
            quiet_since = time.monotonic()
            while turn_id is None:
                await refresh()
                meta = await turn_meta_get_async(client, session_id)
                if meta is not None and meta.turn_id not in seen:
                    turn_id = meta.turn_id
                elif time.monotonic() > deadline or not await _still_queued(
                    client, session_id, message, client_message_id
                ):
                    break
                else:
                    if time.monotonic() - quiet_since >= heartbeat_s:
                        yield b": heartbeat\n\n"
                        quiet_since = time.monotonic()
                    await asyncio.sleep(_FOLLOWUP_POLL_S)
            if turn_id is None:
                break
            seen.add(turn_id)
            async with contextlib.aclosing(follow_turn(session_id, turn_id=turn_id)) as items:
                async for item in items:
                    await refresh()
                    if item.is_terminal:
                        finish = item
                        break
                    yield sse_frame(item)
        yield sse_frame(finish or StreamItem(None, "", {"type": "finish"}))
        yield b"data: [DONE]\n\n"
    except ListenerDisconnected:
        return
    finally:
        # Closed however it ends (answered, disconnected, cancelled), so held streams go on;
        # after its own `finish`, so a held stream ends after it.
        with contextlib.suppress(Exception):
            await rs.async_followup_stream_close(client, session_id, token)


def followup_sse_response(
    session_id: str, *, mark: StreamMark | None, position: int, message: str, client_message_id: str | None
) -> StreamingHttpResponse:
    key = _session_key(session_id) or str(session_id)
    body = followup_body(key, mark=mark, position=position, message=message, client_message_id=client_message_id)
    return _streaming(body)
