"""Narrow unit test (channels' in-memory communicator): a relay that fails mid-turn ends
each socket's stream with `error` + `finish` in that socket's own frame format. The
real-server behaviour of both sockets is covered in tests/chat/turns."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from chat import consumers
from chat.turns.follow import StreamItem

pytestmark = pytest.mark.django_db  # channels closes old DB connections around a consumer's calls

DELTA = {"type": "text-delta", "id": "t", "delta": "a"}


@pytest.fixture(autouse=True)
def _relay_that_fails(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    async def follow_turn(session_id: object, **kwargs: Any) -> AsyncGenerator[StreamItem, None]:
        yield StreamItem("1-0", "t1", DELTA, json.dumps(DELTA, separators=(",", ":")).encode())
        raise RuntimeError("the log went away")

    async def yes(*args: Any) -> bool:
        return True

    async def running(*args: Any, **kwargs: Any) -> str:
        return "t1"

    monkeypatch.setattr(consumers, "follow_turn", follow_turn)
    monkeypatch.setattr(consumers, "_owns_session", yes)
    monkeypatch.setattr(consumers, "_running_turn", running)


async def _frames(app: Any, path: str, kwargs: dict[str, str], frame: dict[str, Any], n: int) -> list[Any]:
    communicator = WebsocketCommunicator(app, path)
    communicator.scope["user"] = SimpleNamespace(is_authenticated=True, pk=1)
    communicator.scope["url_route"] = {"kwargs": kwargs}
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to(frame)
    frames = [await communicator.receive_json_from(timeout=5) for _ in range(n)]
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()
    return frames


def test_the_subscribe_socket_ends_a_failed_relay_with_error_and_finish_payloads() -> None:
    frames = asyncio.run(
        _frames(consumers.SubscribeConsumer.as_asgi(), "/ws/chat/", {}, {"action": "subscribe", "session_id": "s"}, 5)
    )
    assert frames == [
        {"type": "ready"},
        {"type": "subscribed", "session_id": "s", "turn_id": "t1"},
        DELTA,
        {"type": "error", "errorText": "Stream error."},
        {"type": "finish"},
    ]


def test_the_chat_socket_ends_a_failed_relay_with_error_and_finish_frames() -> None:
    frames = asyncio.run(
        _frames(consumers.ChatConsumer.as_asgi(), "/ws/chat/s/", {"session_id": "s"}, {"type": "resume"}, 4)
    )
    assert frames == [
        {"type": "ready", "session_id": "s"},
        {"event_id": "1-0", "turn_id": "t1", "chunk": DELTA},
        {"event_id": None, "turn_id": "t1", "chunk": {"type": "error", "errorText": "Stream error."}},
        {"event_id": None, "turn_id": "t1", "chunk": {"type": "finish"}},
    ]
