"""WebSocket clients nobody here wrote, against the real daphne: a command-line client with
only a Bearer key (no Origin), the Origin rule for cookie sockets (scheme, host and port),
and frames that are not JSON."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from django.test import Client

from chat.models import ChatMessage
from copilot_site.accounts.channels_auth import websocket_origin_allowed
from tests.chat.turns.helpers import Person, fake, person

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _ws_url(base: str, p: Person) -> str:
    return base.replace("http://", "ws://") + f"/ws/chat/{p.session.id}/"


def _cookie(p: Person) -> str:
    web = Client()
    web.force_login(p.user)
    return f"sessionid={web.cookies['sessionid'].value}"


async def _recv(ws: Any, timeout: float = 30) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def _until_finish(ws: Any) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    while not chunks or chunks[-1]["type"] != "finish":
        frame = await _recv(ws)
        if "chunk" in frame:
            chunks.append(frame["chunk"])
    return chunks


async def _handshake_status(url: str, headers: dict[str, str]) -> int:
    """101 when the server accepted the upgrade, else the HTTP status it answered with."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
            assert (await _recv(ws, 10))["type"] == "ready"
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def test_a_bearer_only_client_without_origin_streams_a_turn(stack: str) -> None:
    alice = person("alice")

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, str]]:
        headers = {"Authorization": f"Bearer {alice.key}"}  # no Origin, as any CLI client
        async with websockets.connect(_ws_url(stack, alice), additional_headers=headers, open_timeout=10) as ws:
            sent = dict(ws.request.headers)
            assert await _recv(ws, 10) == {"type": "ready", "session_id": str(alice.session.id)}
            await ws.send(json.dumps({"type": "send", "message": "hi " + fake({"text": "Hello, CLI."})}))
            return await _until_finish(ws), sent

    chunks, sent = asyncio.run(scenario())
    assert "Origin" not in sent and "origin" not in sent
    assert chunks[0]["type"] == "start" and chunks[-1] == {"type": "finish"}
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "Hello, CLI."


@pytest.mark.parametrize(
    ("origin_of", "status"),
    [
        (lambda base: base, 101),
        (lambda base: "http://127.0.0.1:1", 403),  # the right host on another port
        (lambda base: base.replace("http://", "https://"), 403),  # another scheme
        (lambda base: base.replace("127.0.0.1", "localhost"), 403),  # another host, same port
        (lambda base: None, 403),  # no Origin
    ],
    ids=["same-origin", "other-port", "other-scheme", "other-host", "no-origin"],
)
def test_a_cookie_socket_needs_an_origin_matching_scheme_host_and_port(stack: str, origin_of: Any, status: int) -> None:
    alice = person("alice")
    headers = {"Cookie": _cookie(alice)}
    origin = origin_of(stack)
    if origin is not None:
        headers["Origin"] = origin
    assert asyncio.run(_handshake_status(_ws_url(stack, alice), headers)) == status


def test_origin_rule_trusts_csrf_trusted_origins_with_their_port(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com:8443"]
    scope = {"scheme": "ws", "headers": [(b"host", b"127.0.0.1:8000")]}

    def allowed(origin: str) -> bool:
        return websocket_origin_allowed({**scope, "headers": [*scope["headers"], (b"origin", origin.encode())]})

    assert allowed("https://app.example.com:8443") is True
    assert allowed("https://app.example.com") is False
    assert allowed("http://127.0.0.1:8000") is True
    assert allowed("http://127.0.0.1") is False
    assert allowed("not an origin") is False


def test_non_json_and_oversized_frames_get_error_frames_and_the_socket_stays_open(stack: str) -> None:
    alice = person("alice")

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        headers = {"Authorization": f"Bearer {alice.key}"}
        async with websockets.connect(
            _ws_url(stack, alice), additional_headers=headers, open_timeout=10, max_size=None
        ) as ws:
            await _recv(ws, 10)
            errors = []
            for raw in ("not json", "x" * (512 * 1024 + 1), b"\x00binary"):
                await ws.send(raw)
                errors.append(await _recv(ws, 10))
            await ws.send(json.dumps({"type": "send", "message": "still here " + fake({"text": "Still open."})}))
            return errors, await _until_finish(ws)

    errors, chunks = asyncio.run(scenario())
    assert errors == [
        {"type": "error", "code": "invalid_frame", "message": "A frame must be JSON text."},
        {"type": "error", "code": "invalid_frame", "message": "The frame is larger than 524288 bytes."},
        {"type": "error", "code": "invalid_frame", "message": "A frame must be JSON text."},
    ]
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "Still open."
    assert ChatMessage.objects.filter(session=alice.session, role="user").count() == 1


def test_the_subscribe_socket_answers_a_non_json_frame_and_stays_open(stack: str) -> None:
    alice = person("alice")

    async def scenario() -> list[dict[str, Any]]:
        url = stack.replace("http://", "ws://") + "/ws/chat/"
        async with websockets.connect(url, additional_headers=alice.headers, open_timeout=10) as ws:
            assert await _recv(ws, 10) == {"type": "ready"}
            await ws.send("not json")
            first = await _recv(ws, 10)
            await ws.send(json.dumps({"action": "subscribe", "session_id": str(alice.session.id)}))
            return [first, await _recv(ws, 10), await _recv(ws, 10)]

    frames = asyncio.run(scenario())
    assert frames == [
        {"type": "error", "errorText": "A frame must be JSON text."},
        {"type": "subscribed", "session_id": str(alice.session.id), "turn_id": None},
        {"type": "finish"},
    ]
