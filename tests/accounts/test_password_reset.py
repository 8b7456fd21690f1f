"""Django's password-reset flow through the site's pages, with the in-memory mail backend."""

from __future__ import annotations

import re
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.core import mail
from django.test import Client

pytestmark = pytest.mark.django_db

LINK = re.compile(r"^http://testserver(/reset/[^/\s]+/[^/\s]+/)$", re.MULTILINE)
NEW_PASSWORD = "a-new-and-long-passphrase"


def _without_csrf(body: bytes) -> str:
    text, count = re.subn(r'<meta name="csrf-token" content="[^"]+">', "", body.decode())
    assert count == 1
    return text


def _reset_link(client: Client, email: str) -> str:
    response = client.post("/password-reset/", {"email": email})
    assert response.status_code == 302
    assert response["Location"] == "/password-reset/done/"
    assert len(mail.outbox) == 1
    found = LINK.findall(mail.outbox[0].body)
    assert len(found) == 1
    return str(found[0])


def _set_password(client: Client, link: str, password: str) -> Any:
    landing = client.get(link)
    # Django swaps the token for a session value and redirects to a URL without it.
    assert landing.status_code == 302
    form_url = landing["Location"]
    assert form_url.endswith("/set-password/")
    assert client.get(form_url).status_code == 200
    return client.post(form_url, {"new_password1": password, "new_password2": password})


def test_the_login_page_links_to_the_reset_form(db: Any) -> None:
    body = Client().get("/login/").content.decode()
    assert '<a href="/password-reset/">Forgot your password?</a>' in body


def test_the_whole_flow_sets_a_password_that_logs_in(alice: Any) -> None:
    client = Client()
    # when
    link = _reset_link(client, "ALICE@example.com")
    done = _set_password(client, link, NEW_PASSWORD)
    # then
    message = mail.outbox[0]
    assert message.to == ["alice@example.com"]
    assert message.subject == "Reset your Copilot password"
    assert message.from_email == "copilot@localhost"
    assert 'the Copilot account "alice" at testserver' in message.body
    assert done.status_code == 302
    assert done["Location"] == "/reset/done/"
    assert "Password changed" in client.get("/reset/done/").content.decode()
    fresh = Client()
    assert fresh.post("/login/", {"username": "alice", "password": NEW_PASSWORD}).status_code == 302
    assert fresh.session["_auth_user_id"] == str(alice.pk)
    # and the old password no longer works
    old = Client().post("/login/", {"username": "alice", "password": "pw-for-tests"})
    assert old.status_code == 200
    assert "_auth_user_id" not in old.wsgi_request.session


def test_a_link_works_once(alice: Any) -> None:
    client = Client()
    link = _reset_link(client, "alice@example.com")
    _set_password(client, link, NEW_PASSWORD)
    # when
    again = Client().get(link, follow=True)
    # then
    assert again.status_code == 200
    assert 'data-testid="password-reset-invalid"' in again.content.decode()
    assert Client().post("/login/", {"username": "alice", "password": NEW_PASSWORD}).status_code == 302


def test_an_unknown_address_gets_the_same_page_and_no_mail(alice: Any) -> None:
    client = Client()
    # when
    known = client.post("/password-reset/", {"email": "alice@example.com"}, follow=True)
    mail.outbox.clear()
    unknown = client.post("/password-reset/", {"email": "nobody@example.com"}, follow=True)
    # then
    assert unknown.redirect_chain == [("/password-reset/done/", 302)]
    # the same bytes but for the CSRF token, which every page render masks afresh
    assert _without_csrf(unknown.content) == _without_csrf(known.content)
    assert mail.outbox == []


def test_a_new_password_lifts_the_sign_in_lockout_of_the_username(alice: Any) -> None:
    client = Client()
    for _ in range(5):
        client.post("/login/", {"username": "alice", "password": "wrong"})
    assert client.post("/login/", {"username": "alice", "password": "pw-for-tests"}).status_code == 429
    # when
    _set_password(client, _reset_link(client, "alice@example.com"), NEW_PASSWORD)
    # then
    assert AccessAttempt.objects.filter(username="alice").count() == 0
    assert client.post("/login/", {"username": "alice", "password": NEW_PASSWORD}).status_code == 302
