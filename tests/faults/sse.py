"""An SSE reader for the fault suite: every frame with the time it arrived."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Stream:
    status: int = 0
    body: Any = None
    events: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    comments: list[float] = field(default_factory=list)
    done: bool = False
    ended_at: float | None = None
    failure: BaseException | None = None

    @property
    def types(self) -> list[str]:
        return [chunk["type"] for _, chunk in self.events]

    def text(self) -> str:
        return "".join(c["delta"] for _, c in self.events if c["type"] == "text-delta")


def sse_read(
    method: str, url: str, *, headers: dict[str, str], json_body: Any = None, into: Stream, stop_after_deltas: int = 0
) -> Stream:
    """Read a stream to its end (or, given `stop_after_deltas`, disconnect after that many text deltas)."""
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(60, connect=10)) as client,
            client.stream(method, url, headers=headers, json=json_body) as resp,
        ):
            into.status = resp.status_code
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                into.body = json.loads(resp.read() or b"null")
                return into
            event_id: str | None = None
            for line in resp.iter_lines():
                if line.startswith(":"):
                    into.comments.append(time.monotonic())
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    if line[6:] == "[DONE]":
                        into.done = True
                        break
                    into.events.append((event_id, json.loads(line[6:])))
                    into.arrived.append(time.monotonic())
                    event_id = None
                    if stop_after_deltas and into.types.count("text-delta") >= stop_after_deltas:
                        break
    except BaseException as exc:  # kept for the test's assertion
        into.failure = exc
    finally:
        into.ended_at = time.monotonic()
    return into


def sse_background(
    method: str, url: str, *, headers: dict[str, str], json_body: Any = None
) -> tuple[Stream, threading.Thread]:
    stream = Stream()
    thread = threading.Thread(
        target=sse_read, args=(method, url), kwargs={"headers": headers, "json_body": json_body, "into": stream}
    )
    thread.start()
    return stream, thread


def fake(*rounds: dict[str, Any]) -> str:
    """A scripted-LLM marker for a user message."""
    return "<<fake " + json.dumps({"rounds": list(rounds)}) + ">>"
