"""Signup does not say which of username and e-mail address is taken, and probing it is throttled."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client, override_settings

from copilot_site.accounts.forms import IDENTITY_TAKEN
from copilot_site.accounts.models import User

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "a-long-signup-passphrase"


def _signup(client: Client, username: str, email: str, password: str = GOOD_PASSWORD, ip: str = "127.0.0.2") -> Any:
    data = {"username": username, "email": email, "password1": password, "password2": password}
    return client.post("/signup/", data, REMOTE_ADDR=ip)


def _page(response: Any) -> str:
    """The page without what changes between renders (the CSRF token) and the submitted values."""
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())
    body = re.sub(r'<meta name="csrf-token" content="[^"]+">', "", body)
    return re.sub(r'value="[^"]*"', "", body)


def test_a_free_name_signs_up_and_logs_in(db: Any) -> None:
    client = Client()
    response = _signup(client, "dora", "dora@example.com")
    assert response.status_code == 302
    assert response["Location"] == "/copilot"
    assert client.session["_auth_user_id"] == str(User.objects.get(username="dora").pk)


@pytest.mark.parametrize(
    ("username", "email"),
    [("ALICE", "new@example.com"), ("newname", "Alice@Example.com"), ("alice", "alice@example.com")],
    ids=["_case_username", "_case_email", "_case_both"],
)
def test_a_taken_username_or_email_gives_one_generic_error(alice: Any, username: str, email: str) -> None:
    # when
    response = _signup(Client(), username, email)
    # then
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors == {"__all__": [IDENTITY_TAKEN]}
    body = response.content.decode()
    assert "already exists" not in body
    assert User.objects.count() == 1


def test_the_pages_for_a_taken_username_and_a_taken_email_are_the_same(alice: Any) -> None:
    by_name = _signup(Client(), "alice", "fresh@example.com")
    by_email = _signup(Client(), "fresh", "alice@example.com")
    assert _page(by_name) == _page(by_email)


def test_other_errors_are_reported_alike_for_taken_and_free_names(alice: Any) -> None:
    # when: a password the validators refuse
    taken = _signup(Client(), "alice", "fresh@example.com", password="alice123")
    free = _signup(Client(), "fresh", "fresh@example.com", password="fresh123")
    # then: the same password errors, and the taken one adds only the generic error
    assert free.context["form"].errors["password2"] == taken.context["form"].errors["password2"]
    assert set(taken.context["form"].errors) == {"__all__", "password2"}
    assert set(free.context["form"].errors) == {"password2"}
    assert User.objects.count() == 1


@override_settings(COPILOT_SIGNUP_REFUSAL_LIMIT=3)
def test_refusals_for_taken_names_are_throttled_per_address(alice: Any) -> None:
    client = Client()
    # given: three refusals; a bad password does not count
    _signup(client, "fresh", "fresh@example.com", password="1")
    statuses = [_signup(client, "alice", f"a{n}@example.com").status_code for n in range(3)]
    # when
    refused = _signup(client, "dora", "dora@example.com")
    # then
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused["Retry-After"] in {"3599", "3600"}
    assert 'data-testid="signup-throttled"' in refused.content.decode()
    assert not User.objects.filter(username="dora").exists()
    # and another address still signs up
    assert _signup(Client(), "dora", "dora@example.com", ip="127.0.0.3").status_code == 302
