"""Sign-in throttle (django-axes) and the API-key failure counter, through the real views."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import time_machine
import websockets
from axes.models import AccessAttempt
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from chat.models import ChatSession
from copilot_site.accounts.services import api_key_create
from tests.accounts.ws import ws_close_code

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests"  # tests.factories.UserFactory's


def _login(client: Client, username: str, password: str, ip: str = "127.0.0.2") -> Any:
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def _assert_locked_out(response: Any, client: Client) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    body = response.content.decode()
    assert "Too many failed sign-ins" in body
    assert "Try again in 15 minutes" in body
    assert '<a href="/password-reset/">Forgot your password?</a>' in body
    assert "_auth_user_id" not in client.session


def test_five_wrong_passwords_lock_the_username_and_the_right_one_is_then_refused(alice: Any) -> None:
    client = Client()
    # when
    failures = [_login(client, "alice", f"wrong-{n}") for n in range(5)]
    locked = _login(client, "alice", PASSWORD)
    # then: the fifth failure already answers with the lockout
    assert [r.status_code for r in failures] == [200, 200, 200, 200, 429]
    assert "Please enter a correct username and password." in failures[0].content.decode()
    _assert_locked_out(failures[4], client)
    _assert_locked_out(locked, client)
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address) == ("alice", "127.0.0.2")
    assert attempt.failures_since_start == 6


def test_the_username_is_locked_from_every_address(alice: Any) -> None:
    client = Client()
    for n in range(4):
        assert _login(client, "alice", "wrong", ip=f"127.0.1.{n}").status_code == 200
    assert _login(client, "alice", "wrong", ip="127.0.1.4").status_code == 429
    # when
    response = _login(client, "alice", PASSWORD, ip="127.0.2.1")
    # then
    _assert_locked_out(response, client)


def test_the_address_is_locked_for_every_username(alice: Any, bob: Any) -> None:
    client = Client()
    for n in range(4):
        assert _login(client, f"nobody{n}", "wrong", ip="127.0.3.1").status_code == 200
    assert _login(client, "nobody4", "wrong", ip="127.0.3.1").status_code == 429
    # when
    from_there = _login(client, "bob", PASSWORD, ip="127.0.3.1")
    # then
    _assert_locked_out(from_there, client)
    # and another address signs bob in
    elsewhere = _login(Client(), "bob", PASSWORD, ip="127.0.3.2")
    assert elsewhere.status_code == 302
    assert elsewhere["Location"] == "/copilot"


def test_a_successful_sign_in_clears_the_failures(alice: Any) -> None:
    client = Client()
    for _ in range(4):
        _login(client, "alice", "wrong")
    assert _login(client, "alice", PASSWORD).status_code == 302
    client.post("/logout/")
    # when: four more failures stay below the limit
    for _ in range(4):
        assert _login(client, "alice", "wrong").status_code == 200
    response = _login(client, "alice", PASSWORD)
    # then
    assert response.status_code == 302
    assert AccessAttempt.objects.count() == 0


def test_the_lockout_ends_after_the_cool_off_which_each_attempt_during_it_restarts(alice: Any) -> None:
    client = Client()
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        for _ in range(5):
            _login(client, "alice", "wrong")
        traveller.shift(timedelta(seconds=899))
        assert _login(client, "alice", PASSWORD).status_code == 429
        traveller.shift(timedelta(seconds=2))
        assert _login(client, "alice", PASSWORD).status_code == 429
        # when: a whole cool-off after the last attempt
        traveller.shift(timedelta(seconds=901))
        response = _login(client, "alice", PASSWORD)
    # then
    assert response.status_code == 302


@override_settings(COPILOT_LOGIN_FAILURE_LIMIT=2, AXES_FAILURE_LIMIT=2)
def test_the_limit_comes_from_the_setting(alice: Any) -> None:
    client = Client()
    assert [_login(client, "alice", "wrong").status_code for _ in range(2)] == [200, 429]


def test_staff_see_the_lockout_in_the_admin_and_unlock_it(alice: Any, staff: Any) -> None:
    client = Client()
    for _ in range(5):
        _login(client, "alice", "wrong")
    admin = Client()
    admin.force_login(staff)
    # when
    listing = admin.get("/admin/axes/accessattempt/", {"locked_out": "yes"})
    # then
    assert listing.status_code == 200
    assert [a.username for a in listing.context["cl"].result_list] == ["alice"]
    # when
    attempt = AccessAttempt.objects.get(username="alice")
    deleted = admin.post(
        "/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"}
    )
    # then
    assert deleted.status_code == 302
    assert AccessAttempt.objects.count() == 0
    assert _login(client, "alice", PASSWORD).status_code == 302


def test_non_staff_cannot_reach_the_attempts_admin(alice: Any) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get("/admin/axes/accessattempt/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- API keys ------------------------------------------------------------------------


def _bearer(client: APIClient, raw: str, ip: str = "127.0.0.2") -> Any:
    return client.get("/api/chat/sessions", HTTP_AUTHORIZATION=f"Bearer {raw}", REMOTE_ADDR=ip)


def test_twenty_bad_keys_from_one_address_make_every_bearer_request_from_it_429(alice: Any) -> None:
    # given
    _, raw = api_key_create(user=alice, name="k")
    client = APIClient()
    statuses = [_bearer(client, f"cpk_guess{n}").status_code for n in range(20)]
    # when
    refused = _bearer(client, raw)
    # then
    assert statuses == [401] * 20
    assert refused.status_code == 429
    assert refused["Retry-After"] in {"599", "600"}
    wait = refused["Retry-After"]
    detail = f"Too many failed API key attempts from this address. Expected available in {wait} seconds."
    assert refused.json() == {"detail": detail}
    # and another address is not affected
    assert _bearer(client, raw, ip="127.0.0.3").status_code == 200


def test_nineteen_bad_keys_stay_below_the_limit(alice: Any) -> None:
    _, raw = api_key_create(user=alice, name="k")
    client = APIClient()
    for n in range(19):
        _bearer(client, f"cpk_guess{n}")
    assert _bearer(client, raw).status_code == 200


def test_requests_without_a_bearer_key_are_not_counted(alice: Any) -> None:
    _, raw = api_key_create(user=alice, name="k")
    client = APIClient()
    for _ in range(25):
        assert client.get("/api/chat/sessions", REMOTE_ADDR="127.0.0.2").status_code == 401
    assert _bearer(client, raw).status_code == 200


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_the_key_counter_fails_open_when_redis_is_down(alice: Any) -> None:
    _, raw = api_key_create(user=alice, name="k")
    client = APIClient()
    statuses = [_bearer(client, f"cpk_guess{n}").status_code for n in range(21)]
    assert statuses == [401] * 21
    assert _bearer(client, raw).status_code == 200


async def _ws_handshake_status(url: str, headers: dict[str, str]) -> int:
    """101 when the server accepted the upgrade, else the HTTP status it answered with."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_websocket_bad_keys_count_and_a_locked_out_address_has_its_handshake_refused(daphne_server: str) -> None:
    # given
    from tests.factories import UserFactory

    alice = UserFactory(username="alice")
    session = ChatSession.objects.create(user=alice)
    _, raw = api_key_create(user=alice, name="k")
    ws_url = daphne_server.replace("http://", "ws://") + f"/ws/chat/{session.id}/"
    origin = {"Origin": daphne_server}
    client = APIClient()
    # when: 19 failures over HTTP and one over the socket, all from 127.0.0.1
    for n in range(19):
        assert _bearer(client, f"cpk_guess{n}", ip="127.0.0.1").status_code == 401
    assert asyncio.run(ws_close_code(ws_url, {**origin, "Authorization": "Bearer cpk_guess"})) == 4401
    # then: the valid key is refused on both
    assert asyncio.run(_ws_handshake_status(ws_url, {**origin, "Authorization": f"Bearer {raw}"})) == 403
    assert _bearer(client, raw, ip="127.0.0.1").status_code == 429
    # and the session cookie (no bearer header) still connects
    web = Client()
    web.force_login(alice)
    cookie = f"sessionid={web.cookies['sessionid'].value}"
    assert asyncio.run(_ws_handshake_status(ws_url, {**origin, "Cookie": cookie})) == 101


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_daphne_answers_the_lockout_with_429_and_retry_after(daphne_server: str) -> None:
    """The same through the real ASGI server, where Django runs the middleware chain async."""
    import httpx

    from tests.factories import UserFactory

    UserFactory(username="alice")
    with httpx.Client(base_url=daphne_server, timeout=10) as http:
        http.get("/login/")
        token = http.cookies["csrftoken"]

        def attempt(password: str) -> httpx.Response:
            return http.post(
                "/login/",
                data={"username": "alice", "password": password, "csrfmiddlewaretoken": token},
                headers={"Referer": daphne_server + "/login/"},
            )

        # when
        statuses = [attempt("wrong").status_code for _ in range(5)]
        locked = attempt(PASSWORD)
    # then
    assert statuses == [200, 200, 200, 200, 429]
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "900"
    assert "Too many failed sign-ins" in locked.text
    assert "sessionid" not in locked.cookies
    assert AccessAttempt.objects.get(username="alice").failures_since_start == 6
