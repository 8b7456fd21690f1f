"""A round as API-neutral content events, and the pacing and failure injection both streams share."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from copilot_site.testing.llm_script.http import Abort, chunk_write, stream_end
from copilot_site.testing.llm_script.script import Round

EventKind = Literal["reasoning", "reasoning_raw", "text", "tool_start", "tool_args"]


@dataclass
class Event:
    """One content chunk of a reply (API-neutral)."""

    kind: EventKind
    text: str = ""
    stamp: bool = False  # text is made at send time: "@<time.time_ns()>;"
    tool_index: int = 0
    raw: Any = None

    def resolve(self) -> str:
        if self.stamp:
            self.text = f"@{time.time_ns()};"
        return self.text


def content_events(rnd: Round) -> list[Event]:
    events = [Event("reasoning", piece) for piece in rnd.reasoning_pieces()]
    if rnd.has_reasoning_raw:
        events.append(Event("reasoning_raw", raw=rnd.reasoning_raw))
    if rnd.stamp:
        events.extend(Event("text", stamp=True) for _ in range(rnd.stamp_count()))
    else:
        events.extend(Event("text", piece) for piece in rnd.text_pieces())
    for index, call in enumerate(rnd.tool_calls):
        events.append(Event("tool_start", tool_index=index))
        size = rnd.args_chunk_size if rnd.args_chunk_size > 0 else max(1, len(call.arguments))
        for start in range(0, len(call.arguments), size):
            events.append(Event("tool_args", call.arguments[start : start + size], tool_index=index))
    return events


def completion_chars(events: list[Event]) -> int:
    """Characters of generated reasoning, text and tool arguments (after sending)."""
    return sum(len(e.text) for e in events if e.kind in ("reasoning", "text", "tool_args"))


async def pace(rnd: Round, index: int) -> None:
    delay = rnd.first_delay_ms if index == 0 else rnd.delay_ms
    if delay > 0:
        await asyncio.sleep(delay / 1000)


def error_due(rnd: Round, sent: int) -> bool:
    """Whether the injected failure is due after ``sent`` content chunks."""
    return rnd.error_after_chunks is not None and sent >= rnd.error_after_chunks


async def generation_sleep(rnd: Round, count: int) -> None:
    """The whole stream's pacing at once, for a non-streamed reply."""
    total = rnd.first_delay_ms + rnd.delay_ms * max(0, count - 1)
    if total > 0:
        await asyncio.sleep(total / 1000)


async def stream_error(writer: asyncio.StreamWriter, rnd: Round, payload: dict[str, Any], event: str = "") -> bool:
    """End a stream with an error event (or drop the connection); the connection then closes."""
    if rnd.error_mode == "disconnect":
        raise Abort
    prefix = f"event: {event}\n" if event else ""
    await chunk_write(writer, f"{prefix}data: {json.dumps(payload)}\n\n".encode())
    await stream_end(writer)
    return False
