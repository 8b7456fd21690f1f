from __future__ import annotations

import asyncio
import json
from io import StringIO
from typing import Any

import pytest
import websockets
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from chat.models import ChatSession
from copilot_site.accounts.models import ApiKey
from tests.accounts.ws import ws_close_code


def _create_key(username: str) -> str:
    out = StringIO()
    call_command("create_api_key", username, stdout=out)
    return out.getvalue().strip()


def test_create_api_key_prints_a_key_that_is_stored_only_as_a_hash(alice: Any) -> None:
    # when
    raw = _create_key("alice")
    # then
    key = ApiKey.objects.get(user=alice)
    assert raw.startswith("cpk_")
    assert len(raw) == 4 + 43
    assert key.key_hash == ApiKey.hash_key(raw)
    assert raw not in (key.key_hash, key.prefix, key.name)
    assert key.prefix == raw[:10]


def test_create_api_key_for_unknown_user_fails(db: Any) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_api_key", "nobody")
    assert ApiKey.objects.count() == 0


def test_bearer_key_authenticates_a_drf_request(alice: Any) -> None:
    # given
    session = ChatSession.objects.create(user=alice, title="Mine")
    raw = _create_key("alice")
    client = APIClient()
    # when
    response = client.get("/api/chat/sessions", HTTP_AUTHORIZATION=f"Bearer {raw}")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1
    assert [s["id"] for s in body["sessions"]] == [str(session.id)]
    assert body["sessions"][0]["title"] == "Mine"
    assert body["sessions"][0]["turn_in_flight"] is False
    assert ApiKey.objects.get(user=alice).last_used_at is not None


def test_revoked_key_is_rejected_with_401(alice: Any) -> None:
    # given
    raw = _create_key("alice")
    web = Client()
    web.force_login(alice)
    key = ApiKey.objects.get(user=alice)
    web.post(f"/account/keys/{key.pk}/revoke/")
    # when
    response = APIClient().get("/api/chat/sessions", HTTP_AUTHORIZATION=f"Bearer {raw}")
    # then
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked API key."}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_anonymous_api_request_is_401(db: Any) -> None:
    response = APIClient().get("/api/chat/sessions")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_session_cookie_authenticates_the_api(alice: Any) -> None:
    # given
    ChatSession.objects.create(user=alice, title="Cookie")
    client = APIClient()
    client.force_login(alice)
    # when
    response = client.get("/api/chat/sessions")
    # then
    assert response.status_code == 200
    assert [s["title"] for s in response.json()["sessions"]] == ["Cookie"]


def test_cookie_api_writes_need_csrf(alice: Any) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/api/chat/sessions", {}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert ChatSession.objects.count() == 0


def test_account_page_creates_a_key_shown_once_and_revokes_it(alice: Any) -> None:
    # given
    web = Client()
    web.force_login(alice)
    # when
    created = web.post("/account/keys/", {"name": "laptop"})
    listing = web.get("/account/")
    # then
    key = ApiKey.objects.get(user=alice)
    raw = created.context["new_key"]
    assert key.name == "laptop"
    assert ApiKey.hash_key(raw) == key.key_hash
    assert raw in created.content.decode()
    assert raw not in listing.content.decode()
    assert key.prefix in listing.content.decode()
    # when
    web.post(f"/account/keys/{key.pk}/revoke/")
    # then
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_a_user_cannot_revoke_someone_elses_key(alice: Any, charlie: Any) -> None:
    raw = _create_key("alice")
    key = ApiKey.objects.get(user=alice)
    web = Client()
    web.force_login(charlie)
    web.post(f"/account/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is None
    assert APIClient().get("/api/chat/sessions", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


async def _ws_first_frame(url: str, headers: dict[str, str]) -> Any:
    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_websocket_accepts_api_key_and_session_cookie_and_rejects_revoked(daphne_server: str) -> None:
    # given
    from tests.factories import UserFactory

    alice = UserFactory(username="alice")
    session = ChatSession.objects.create(user=alice)
    raw = _create_key("alice")
    ws_url = daphne_server.replace("http://", "ws://") + f"/ws/chat/{session.id}/"
    origin = {"Origin": daphne_server}
    web = Client()
    web.force_login(alice)
    cookie = f"sessionid={web.cookies['sessionid'].value}"

    # when / then: a bearer key
    frame = asyncio.run(_ws_first_frame(ws_url, {**origin, "Authorization": f"Bearer {raw}"}))
    assert frame == {"type": "ready", "session_id": str(session.id)}
    # when / then: the session cookie
    frame = asyncio.run(_ws_first_frame(ws_url, {**origin, "Cookie": cookie}))
    assert frame == {"type": "ready", "session_id": str(session.id)}
    # when / then: revoked key, no credentials, someone else's session
    ApiKey.objects.filter(user=alice).update(revoked_at="2026-01-01T00:00:00Z")
    assert asyncio.run(ws_close_code(ws_url, {**origin, "Authorization": f"Bearer {raw}"})) == 4401
    assert asyncio.run(ws_close_code(ws_url, origin)) == 4401
    charlie = UserFactory(username="charlie")
    foreign = ChatSession.objects.create(user=charlie)
    foreign_url = daphne_server.replace("http://", "ws://") + f"/ws/chat/{foreign.id}/"
    assert asyncio.run(ws_close_code(foreign_url, {**origin, "Cookie": cookie})) == 4404
    # and: sockets only read the session, they never write one
    from django.contrib.sessions.models import Session

    assert Session.objects.count() == 1
    # when / then: a cookie whose session was signed out, and a made-up one
    web.logout()
    assert Session.objects.count() == 0
    assert asyncio.run(ws_close_code(ws_url, {**origin, "Cookie": cookie})) == 4401
    assert asyncio.run(ws_close_code(ws_url, {**origin, "Cookie": "sessionid=made-up"})) == 4401
    assert Session.objects.count() == 0
