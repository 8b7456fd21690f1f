"""The chat page views: `/copilot` (with `?sessionId=`) and `/chat/<id>/`."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from chat.models import ChatSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_browser(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def alice_session(alice: Any) -> ChatSession:
    return ChatSession.objects.create(user=alice, title="Alice's <secret> plans")


def test_chat_page_requires_login(client: Client) -> None:
    response = client.get("/copilot")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/copilot"


def test_root_redirects_to_the_chat_page(alice_browser: Client) -> None:
    response = alice_browser.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/copilot"


def test_chat_page_without_a_session_is_a_new_chat(alice_browser: Client) -> None:
    # when
    response = alice_browser.get("/copilot")
    # then
    assert response.status_code == 200
    assert response.templates[0].name == "chat/chat.html"
    assert response.context["chat_session"] is None
    body = response.content.decode()
    assert 'data-session-id=""' in body
    assert '<meta name="csrf-token" content="' in body
    assert '<script type="module" src="/static/chat/app.js">' in body
    assert '<script src="/static/vendor/dompurify/purify.min.js">' in body


def test_deep_link_opens_an_owned_session(alice_browser: Client, alice_session: ChatSession) -> None:
    response = alice_browser.get(f"/copilot?sessionId={alice_session.pk}")
    assert response.status_code == 200
    assert response.context["chat_session"] == alice_session
    body = response.content.decode()
    assert f'data-session-id="{alice_session.pk}"' in body
    assert "Alice&#x27;s &lt;secret&gt; plans" in body


def test_chat_path_opens_an_owned_session(alice_browser: Client, alice_session: ChatSession) -> None:
    response = alice_browser.get(f"/chat/{alice_session.pk}/")
    assert response.status_code == 200
    assert response.context["chat_session"] == alice_session


@pytest.mark.parametrize("path", ["/copilot?sessionId={id}", "/chat/{id}/"], ids=["_case_query", "_case_path"])
def test_another_users_session_is_404(charlie: Any, alice_session: ChatSession, path: str) -> None:
    # given
    client = Client()
    client.force_login(charlie)
    # when
    response = client.get(path.format(id=alice_session.pk))
    # then: the same answer as for a session that does not exist, and nothing of alice's shown
    assert response.status_code == 404
    assert b"secret" not in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/copilot?sessionId=00000000-0000-0000-0000-000000000000",
        "/copilot?sessionId=not-a-uuid",
        "/chat/00000000-0000-0000-0000-000000000000/",
        "/chat/not-a-uuid/",
    ],
    ids=["_case_missing_query", "_case_malformed_query", "_case_missing_path", "_case_malformed_path"],
)
def test_missing_or_malformed_session_is_404(alice_browser: Client, path: str) -> None:
    assert alice_browser.get(path).status_code == 404


def test_demo_model_is_labelled_on_the_chat_page(alice_browser: Client, settings: Any) -> None:
    settings.COPILOT_DEMO_MODEL = True
    body = alice_browser.get("/copilot").content.decode()
    assert 'data-testid="demo-banner"' in body
    assert 'data-testid="demo-badge"' in body


def test_no_demo_label_with_a_configured_model(alice_browser: Client, settings: Any) -> None:
    settings.COPILOT_DEMO_MODEL = False
    body = alice_browser.get("/copilot").content.decode()
    assert "demo-banner" not in body
    assert "demo-badge" not in body
