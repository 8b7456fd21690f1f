"""An open WebSocket ends with its credential: revoking its API key or logging out its
session closes it with 4401 within 5 s (pushed through a channels group), and every
frame re-checks the credential, so a `send` after revocation starts no turn.
Real daphne, real Celery worker, real websockets client."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from chat.models import ChatMessage, ChatSession, TurnUsage
from copilot_site.accounts.models import ApiKey
from copilot_site.accounts.services import api_key_create
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLOSE_DEADLINE_S = 5.0
UNAUTHENTICATED_FRAME = {"type": "error", "code": "unauthenticated", "message": "Your sign-in ended; sign in again."}


def _ws_url(base: str, session: ChatSession | None) -> str:
    return base.replace("http://", "ws://") + ("/ws/chat/" if session is None else f"/ws/chat/{session.id}/")


async def _frames_until_closed(ws: Any, deadline_s: float) -> tuple[list[dict[str, Any]], int | None, float]:
    """Every frame until the server closes the socket: (frames, close code, seconds it took)."""
    started = time.monotonic()
    frames: list[dict[str, Any]] = []
    try:
        while True:
            remaining = deadline_s - (time.monotonic() - started)
            if remaining <= 0:
                raise AssertionError(f"socket still open after {deadline_s}s; frames: {frames}")
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), remaining)))
    except websockets.ConnectionClosed as exc:
        return frames, (exc.rcvd.code if exc.rcvd else None), time.monotonic() - started


def _has_finish(frames: list[dict[str, Any]]) -> bool:
    return any(f.get("chunk") == {"type": "finish"} for f in frames)


def _alice() -> tuple[Any, ChatSession, ApiKey, str]:
    alice = UserFactory(username="alice")
    key, raw = api_key_create(user=alice, name="socket")
    return alice, ChatSession.objects.create(user=alice), key, raw


def _web_login(user: Any) -> tuple[Client, str]:
    web = Client()
    web.force_login(user)
    return web, f"sessionid={web.cookies['sessionid'].value}"


@pytest.mark.parametrize("per_chat", [True, False], ids=["chat socket", "subscribe socket"])
def test_revoking_the_key_closes_its_socket_4401(daphne_server: str, per_chat: bool) -> None:
    alice, session, key, raw = _alice()
    web, _ = _web_login(alice)
    headers = {"Origin": daphne_server, "Authorization": f"Bearer {raw}"}

    async def scenario() -> tuple[list[dict[str, Any]], int | None, float]:
        url = _ws_url(daphne_server, session if per_chat else None)
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
            # when: the key is revoked on the account page (another process than daphne)
            response = await asyncio.to_thread(web.post, f"/account/keys/{key.pk}/revoke/")
            assert response.status_code == 302
            return await _frames_until_closed(ws, CLOSE_DEADLINE_S)

    frames, code, took = asyncio.run(scenario())
    assert code == 4401
    assert frames == [UNAUTHENTICATED_FRAME]
    assert took < CLOSE_DEADLINE_S


def test_logging_out_closes_the_sockets_of_that_session_only(daphne_server: str) -> None:
    alice, session, _, raw = _alice()
    web, cookie = _web_login(alice)
    _, other_cookie = _web_login(alice)  # a second browser of the same user
    origin = {"Origin": daphne_server}

    async def scenario() -> tuple[list[dict[str, Any]], int | None, float, dict[str, Any]]:
        url = _ws_url(daphne_server, session)
        async with (
            websockets.connect(url, additional_headers={**origin, "Cookie": cookie}, open_timeout=10) as ws,
            websockets.connect(url, additional_headers={**origin, "Cookie": other_cookie}, open_timeout=10) as other,
            websockets.connect(
                url, additional_headers={**origin, "Authorization": f"Bearer {raw}"}, open_timeout=10
            ) as keyed,
        ):
            for socket in (ws, other, keyed):
                assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "ready"
            # when: the first browser signs out
            response = await asyncio.to_thread(web.post, "/logout/")
            assert response.status_code == 302
            result = await _frames_until_closed(ws, CLOSE_DEADLINE_S)
            # then: the other session's socket and the key's socket still answer
            await other.send(json.dumps({"type": "resume"}))
            await keyed.send(json.dumps({"type": "resume"}))
            answer = json.loads(await asyncio.wait_for(other.recv(), 10))
            assert json.loads(await asyncio.wait_for(keyed.recv(), 10)) == {"type": "idle"}
            return (*result, answer)

    frames, code, took, other_answer = asyncio.run(scenario())
    assert code == 4401
    assert frames == [UNAUTHENTICATED_FRAME]
    assert took < CLOSE_DEADLINE_S
    assert other_answer == {"type": "idle"}
    assert Session.objects.count() == 1


def test_a_send_after_revocation_starts_no_turn(daphne_server: str, celery_worker: Any, fake_llm: Any) -> None:
    """The revocation here skips the push (a direct row update), so only the per-frame
    re-check stands between the `send` and a new turn."""
    fake_llm.reset()
    alice, session, key, raw = _alice()
    headers = {"Origin": daphne_server, "Authorization": f"Bearer {raw}"}

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int | None]:
        async with websockets.connect(
            _ws_url(daphne_server, session), additional_headers=headers, open_timeout=10
        ) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
            # given: a send works while the key is active
            await ws.send(json.dumps({"type": "send", "message": "first"}))
            first: list[dict[str, Any]] = []
            # the turn's `finish` chunk and the user's completion notice (two channels: any order)
            while not (_has_finish(first) and any(f.get("type") == "copilot_completion" for f in first)):
                first.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            # when: the key is revoked behind the socket's back, then a send arrives
            await asyncio.to_thread(lambda: ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now()))
            await ws.send(json.dumps({"type": "send", "message": "after revocation"}))
            frames, code, _ = await _frames_until_closed(ws, CLOSE_DEADLINE_S)
            return first, frames, code

    first, frames, code = asyncio.run(scenario())
    assert [f["status"] for f in first if f.get("type") == "copilot_completion"] == ["completed"]
    assert code == 4401
    assert frames == [UNAUTHENTICATED_FRAME]
    # then: no turn, no row for the refused send
    assert TurnUsage.objects.filter(session=session).count() == 1
    assert list(ChatMessage.objects.filter(session=session, role="user").values_list("content", flat=True)) == ["first"]


def test_a_frame_on_a_signed_out_session_closes_4401(daphne_server: str) -> None:
    """The session row is gone (expired, deleted by staff) without a logout signal."""
    alice, session, _, _ = _alice()
    _, cookie = _web_login(alice)
    headers = {"Origin": daphne_server, "Cookie": cookie}

    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        async with websockets.connect(
            _ws_url(daphne_server, session), additional_headers=headers, open_timeout=10
        ) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
            await asyncio.to_thread(lambda: Session.objects.all().delete())
            await ws.send(json.dumps({"type": "send", "message": "hello?"}))
            frames, code, _ = await _frames_until_closed(ws, CLOSE_DEADLINE_S)
            return frames, code

    frames, code = asyncio.run(scenario())
    assert code == 4401
    assert frames == [UNAUTHENTICATED_FRAME]
    assert not ChatMessage.objects.filter(session=session).exists()
    assert not TurnUsage.objects.filter(session=session).exists()


def test_a_frame_after_a_password_change_elsewhere_closes_4401(daphne_server: str) -> None:
    """Changing the password ends the user's other sessions (Django's session auth hash)."""
    alice, session, _, _ = _alice()
    _, cookie = _web_login(alice)
    headers = {"Origin": daphne_server, "Cookie": cookie}

    def change_password() -> None:
        alice.set_password("a new password 123")
        alice.save(update_fields=["password"])

    async def scenario() -> tuple[list[dict[str, Any]], int | None]:
        async with websockets.connect(
            _ws_url(daphne_server, session), additional_headers=headers, open_timeout=10
        ) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
            await ws.send(json.dumps({"type": "resume"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "idle"}
            await asyncio.to_thread(change_password)
            await ws.send(json.dumps({"type": "send", "message": "still me?"}))
            frames, code, _ = await _frames_until_closed(ws, CLOSE_DEADLINE_S)
            return frames, code

    frames, code = asyncio.run(scenario())
    assert code == 4401
    assert frames == [UNAUTHENTICATED_FRAME]
    assert not ChatMessage.objects.filter(session=session).exists()


def test_staff_deleting_the_key_in_the_admin_closes_its_socket_4401(daphne_server: str) -> None:
    alice, session, key, raw = _alice()
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    admin_web, _ = _web_login(staff)
    headers = {"Origin": daphne_server, "Authorization": f"Bearer {raw}"}

    async def scenario() -> tuple[list[dict[str, Any]], int | None, float]:
        async with websockets.connect(
            _ws_url(daphne_server, session), additional_headers=headers, open_timeout=10
        ) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
            response = await asyncio.to_thread(
                admin_web.post, f"/admin/accounts/apikey/{key.pk}/delete/", {"post": "yes"}
            )
            assert response.status_code == 302
            return await _frames_until_closed(ws, CLOSE_DEADLINE_S)

    frames, code, took = asyncio.run(scenario())
    assert code == 4401
    assert frames == [UNAUTHENTICATED_FRAME]
    assert took < CLOSE_DEADLINE_S
    assert not ApiKey.objects.filter(pk=key.pk).exists()
