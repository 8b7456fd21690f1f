"""A database or Redis outage answers 503 with `Retry-After`: JSON `{detail, code}` on the
API (also when it fails while looking up the API key), the plain 503 page elsewhere,
never Django's HTML 500."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import httpx
import pytest
import redis
import redis.connection
from django.db import InterfaceError, OperationalError
from django.db.backends.utils import CursorWrapper
from django.test import Client
from rest_framework.test import APIClient

from chat.models import ChatMessage, ChatSession
from chat.turns.follow import StreamItem
from copilot_site.accounts.services import api_key_create
from copilot_site.core.embedded_redis import free_port, start_redis, stop_process
from copilot_site.core.outages import outage_code
from copilot_site.testing.processes import start_daphne
from ratelimits.errors import ResetFailed
from tests.conftest import ARTIFACTS

DATABASE_BODY = {
    "detail": "The database is unavailable right now. Try again in a few seconds.",
    "code": "database_unavailable",
}
REDIS_BODY = {
    "detail": "The message store is unavailable right now. Try again in a few seconds.",
    "code": "redis_unavailable",
}
DELTA = {"type": "text-delta", "id": "t", "delta": "a"}


@contextmanager
def database_down(error: type[Exception] = OperationalError) -> Iterator[mock.MagicMock]:
    failure = error("terminating connection due to administrator command")
    with (
        mock.patch.object(CursorWrapper, "execute", side_effect=failure) as execute,
        mock.patch.object(CursorWrapper, "executemany", side_effect=failure),
    ):
        yield execute


@contextmanager
def redis_down() -> Iterator[mock.MagicMock]:
    failure = redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    with mock.patch.object(redis.connection.AbstractConnection, "send_packed_command", side_effect=failure) as send:
        yield send


def _bearer_client(user: Any) -> APIClient:
    _, key = api_key_create(user=user, name="tests")
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _assert_json_503(response: Any, body: dict[str, str]) -> None:
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == body
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_the_api_key_lookup_during_a_database_outage_answers_json_503(alice: Any, error: type[Exception]) -> None:
    client = _bearer_client(alice)
    with database_down(error) as execute:
        response = client.get("/api/chat/sessions")
    assert execute.called  # it failed in the lookup of the key, before any view code
    _assert_json_503(response, DATABASE_BODY)


@pytest.mark.django_db
def test_following_a_turn_during_a_redis_outage_answers_json_503(alice: Any) -> None:
    client = _bearer_client(alice)
    session = ChatSession.objects.create(user=alice)
    with redis_down() as send:
        response = client.get(f"/api/chat/sessions/{session.id}/stream")
    assert send.called
    _assert_json_503(response, REDIS_BODY)


@pytest.mark.django_db
def test_a_send_during_a_redis_outage_answers_json_503_and_saves_nothing(alice: Any) -> None:
    client = _bearer_client(alice)
    session = ChatSession.objects.create(user=alice)
    with redis_down():
        response = client.post(f"/api/chat/sessions/{session.id}/stream", {"message": "hi"}, format="json")
    _assert_json_503(response, REDIS_BODY)
    assert ChatMessage.objects.filter(session=session).count() == 0


@pytest.mark.django_db
def test_a_session_authenticated_api_call_during_a_database_outage_answers_json_503(alice: Any) -> None:
    client = APIClient(raise_request_exception=False)
    client.force_login(alice)
    with database_down():
        response = client.get("/api/chat/sessions")
    _assert_json_503(response, DATABASE_BODY)


@pytest.mark.django_db
def test_the_api_answers_as_before_once_the_database_is_back(alice: Any) -> None:
    client = _bearer_client(alice)
    with database_down():
        assert client.get("/api/chat/sessions").status_code == 503
    response = client.get("/api/chat/sessions")
    assert response.status_code == 200
    assert "Retry-After" not in response


@pytest.mark.django_db
def test_a_page_during_a_database_outage_is_the_plain_503_page(alice: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    with database_down():
        response = client.get("/copilot")
    assert response.status_code == 503
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert "<h1>Temporarily unavailable</h1>" in page
    assert DATABASE_BODY["detail"] in page
    assert "Traceback" not in page
    assert "Server Error (500)" not in page


@pytest.mark.django_db
def test_a_page_that_needs_no_redis_still_renders_during_a_redis_outage(alice: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    with redis_down():
        response = client.get("/copilot")
    assert response.status_code == 200
    assert "Retry-After" not in response


@pytest.mark.django_db
def test_an_outage_inside_a_middleware_is_the_503_page_too(alice: Any) -> None:
    # Django turns a middleware's exception into an error response before any outer
    # middleware sees it: the handler500 answers it.
    client = Client(raise_request_exception=False)
    failure = redis.exceptions.TimeoutError("Timeout reading from socket")
    with mock.patch("django.middleware.csrf.CsrfViewMiddleware.process_view", side_effect=failure):
        page = client.get("/copilot")
        api = client.get("/api/chat/sessions")
    assert page.status_code == 503
    assert page["Retry-After"] == "5"
    assert REDIS_BODY["detail"] in page.content.decode()
    _assert_json_503(api, REDIS_BODY)


@pytest.mark.django_db
def test_any_other_error_is_still_a_500_not_a_503(alice: Any) -> None:
    client = _bearer_client(alice)
    with mock.patch.object(CursorWrapper, "execute", side_effect=RuntimeError("a bug")):
        response = client.get("/api/chat/sessions")
    assert response.status_code == 500
    assert "Retry-After" not in response


def test_an_outage_is_recognised_through_the_exceptions_it_caused() -> None:
    wrapped = RuntimeError("could not follow the turn")
    wrapped.__cause__ = redis.exceptions.TimeoutError("Timeout reading from socket")
    assert outage_code(wrapped) == "redis_unavailable"
    assert outage_code(OperationalError("database is locked")) == "database_unavailable"
    # an application error raised from an outage keeps its own answer
    chosen = ResetFailed("Unable to verify reset eligibility — please try again later.")
    chosen.__cause__ = redis.exceptions.ConnectionError("down")
    assert outage_code(chosen) is None
    assert outage_code(ValueError("no")) is None
    assert outage_code(None) is None


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_real_web_server_answers_json_503_once_its_redis_is_killed(live_env: dict[str, str], alice: Any) -> None:
    # given: daphne on a redis-server of this test's own
    _, key = api_key_create(user=alice, name="tests")
    port = free_port()
    own_redis = start_redis(port, Path(tempfile.mkdtemp(prefix="copilot-outage-redis-")))
    env = {**live_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    web, web_port = start_daphne(env, ARTIFACTS / "logs")
    session = ChatSession.objects.create(user=alice)
    url = f"http://127.0.0.1:{web_port}/api/chat/sessions/{session.id}/stream"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        assert httpx.get(url, headers=headers, timeout=10).status_code == 204  # no turn running
        # when: that Redis dies
        os.killpg(own_redis.pid, 9)
        own_redis.wait(timeout=10)
        # then: the API answers JSON 503 (not Django's HTML 500), quickly
        started = time.monotonic()
        response = httpx.get(url, headers=headers, timeout=20)
        assert time.monotonic() - started < 10
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/json"
        assert response.headers["retry-after"] == "5"
        assert response.json() == REDIS_BODY
    finally:
        web.stop()
        stop_process(own_redis)


# --- the WebSocket: an error frame, then a normal close ---------------------------------


async def _socket_frames(monkeypatch: pytest.MonkeyPatch, follow: Any, frame: dict[str, Any]) -> tuple[list[Any], Any]:
    from channels.testing import WebsocketCommunicator

    from chat import consumers

    async def yes(*args: Any) -> bool:
        return True

    async def running(*args: Any, **kwargs: Any) -> str:
        return "t1"

    monkeypatch.setattr(consumers, "follow_turn", follow)
    monkeypatch.setattr(consumers, "_owns_session", yes)
    monkeypatch.setattr(consumers, "_running_turn", running)
    communicator = WebsocketCommunicator(consumers.ChatConsumer.as_asgi(), "/ws/chat/s/")
    communicator.scope["user"] = SimpleNamespace(is_authenticated=True, pk=1)
    communicator.scope["url_route"] = {"kwargs": {"session_id": "s"}}
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to(frame)
    frames: list[Any] = []
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            await communicator.wait()
            return frames, output
        frames.append(json.loads(output["text"]))


@pytest.mark.django_db
def test_a_relay_ended_by_a_redis_outage_sends_error_and_finish_then_closes_normally(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    async def follow_turn(session_id: object, **kwargs: Any) -> AsyncGenerator[StreamItem, None]:
        yield StreamItem("1-0", "t1", DELTA, json.dumps(DELTA, separators=(",", ":")).encode())
        raise redis.exceptions.ConnectionError("Connection closed by server.")

    frames, close = asyncio.run(_socket_frames(monkeypatch, follow_turn, {"type": "resume"}))
    assert frames == [
        {"type": "ready", "session_id": "s"},
        {"event_id": "1-0", "turn_id": "t1", "chunk": DELTA},
        {"event_id": None, "turn_id": "t1", "chunk": {"type": "error", "errorText": REDIS_BODY["detail"]}},
        {"event_id": None, "turn_id": "t1", "chunk": {"type": "finish"}},
    ]
    assert close == {"type": "websocket.close", "code": 1000}


@pytest.mark.django_db
def test_a_frame_handled_during_a_database_outage_is_an_error_frame_then_a_normal_close(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    from chat import consumers

    async def stop(session_id: str) -> dict[str, Any]:
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(consumers, "_stop", stop)

    async def never(session_id: object, **kwargs: Any) -> AsyncGenerator[StreamItem, None]:
        raise AssertionError("nothing is followed")
        yield

    frames, close = asyncio.run(_socket_frames(monkeypatch, never, {"type": "stop"}))
    assert frames == [
        {"type": "ready", "session_id": "s"},
        {"type": "error", "code": "database_unavailable", "message": DATABASE_BODY["detail"]},
    ]
    assert close == {"type": "websocket.close", "code": 1000}
