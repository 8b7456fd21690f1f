"""Real clients for end-to-end turn tests: SSE over HTTP (httpx) and WebSockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from chat.models import ChatSession
from chat.turns import scripts as rs
from copilot_site.accounts.services import api_key_create
from tests.factories import UserFactory


def fake(*rounds: dict[str, Any]) -> str:
    """A scripted-LLM marker for a user message."""
    return "<<fake " + json.dumps({"rounds": list(rounds)}) + ">>"


@dataclass
class Person:
    user: Any
    key: str
    session: ChatSession

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def person(username: str) -> Person:
    user = UserFactory(username=username)
    _, key = api_key_create(user=user, name="tests")
    return Person(user, key, ChatSession.objects.create(user=user))


@dataclass
class SseResult:
    status: int
    headers: dict[str, str]
    events: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    done: bool = False
    json_body: Any = None

    @property
    def types(self) -> list[str]:
        return [chunk["type"] for _, chunk in self.events]

    def text(self) -> str:
        return "".join(c["delta"] for _, c in self.events if c["type"] == "text-delta")


def read_sse(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    json_body: Any = None,
    stop_when: Callable[[SseResult], bool] | None = None,
    timeout: float = 60,
    into: SseResult | None = None,
) -> SseResult:
    """Read an SSE response frame by frame; disconnect early when `stop_when` says so.
    Given `into`, events land there as they arrive (for a reader on another thread)."""
    with httpx.Client(timeout=timeout) as client, client.stream(method, url, headers=headers, json=json_body) as resp:
        result = into if into is not None else SseResult(0, {})
        result.status, result.headers = resp.status_code, dict(resp.headers)
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            body = resp.read()
            result.json_body = json.loads(body) if body else None
            return result
        event_id: str | None = None
        for line in resp.iter_lines():
            if line.startswith(":"):
                result.comments.append(line[1:].strip())
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                payload = line[6:]
                if payload == "[DONE]":
                    result.done = True
                    break
                result.events.append((event_id, json.loads(payload)))
                event_id = None
                if stop_when is not None and stop_when(result):
                    break
        return result


def wait_until(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


class WsClient:
    """A WebSocket client that records every frame it receives: a chat's socket, or with
    `session_id=None` the user's subscribe socket (`/ws/chat/`)."""

    def __init__(self, base_url: str, session_id: object, headers: dict[str, str]) -> None:
        path = "/ws/chat/" if session_id is None else f"/ws/chat/{session_id}/"
        self.url = base_url.replace("http://", "ws://") + path
        self.headers = {"Origin": base_url, **headers}
        self.frames: list[dict[str, Any]] = []
        self.ws: Any = None

    async def __aenter__(self) -> WsClient:
        self.ws = await websockets.connect(self.url, additional_headers=self.headers, open_timeout=10)
        ready = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert ready["type"] == "ready"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 30) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(timeout=max(deadline - time.monotonic(), 0.01))
            if predicate(frame):
                return frame

    async def until_finish(self, timeout: float = 60) -> list[dict[str, Any]]:
        await self.until(lambda f: f.get("chunk", {}).get("type") == "finish", timeout)
        return self.chunks()

    def chunks(self) -> list[dict[str, Any]]:
        return [f["chunk"] for f in self.frames if "chunk" in f]

    def event_ids(self) -> list[str]:
        return [f["event_id"] for f in self.frames if "chunk" in f and f["event_id"]]


def publish_chunk(turn_id: str, chunk: dict[str, Any]) -> str:
    """Append one chunk to a turn's stream and live channel as the worker's appender does
    (the same Lua script, `STREAM_APPEND`), one call at a time; its entry id."""
    data = json.dumps(chunk, separators=(",", ":"))
    entry_id = rs.redis_client().eval(
        rs.STREAM_APPEND, 1, rs.turn_stream_key(turn_id), rs.turn_live_channel(turn_id), data, rs.TURN_TTL_S, "*"
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
