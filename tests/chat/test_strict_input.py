"""Strict input on the real URL conf: strings must be strings, unknown keys refused where the
contract says so, the message length from COPILOT_MESSAGE_MAX_CHARS, pagination bounded."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from rest_framework.test import APIClient

from chat import apis
from chat.models import ChatMessage, ChatSession

pytestmark = pytest.mark.django_db

NOT_A_STRING = ["Not a valid string."]


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every `turn_send` the stream endpoint makes, recorded and answered as queued (no turn runs)."""
    calls: list[dict[str, Any]] = []

    def turn_send(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return SimpleNamespace(outcome="queued", queued_body=lambda: {"queued": True})

    monkeypatch.setattr(apis, "turn_send", turn_send)  # the view calls the name it imported
    return calls


@pytest.fixture
def session(alice: Any) -> ChatSession:
    return ChatSession.objects.create(user=alice, title="kept")


def stream(client: APIClient, session: ChatSession, body: dict[str, Any]) -> Any:
    # A JSON-only client: a queued send answers 202 JSON (a stream client gets the follow-up's stream).
    return client.post(
        f"/api/chat/sessions/{session.pk}/stream", data=body, format="json", HTTP_ACCEPT="application/json"
    )


# ---------------------------------------------------------------- strings must be strings


@pytest.mark.parametrize("message", [123, 1.5, True, ["hi"], {"text": "hi"}])
def test_a_message_that_is_not_a_string_is_400_and_sends_nothing(
    alice_client: APIClient, session: ChatSession, sends: list[dict[str, Any]], message: Any
) -> None:
    response = stream(alice_client, session, {"message": message})
    assert (response.status_code, response.json()) == (400, {"message": NOT_A_STRING})
    assert (sends, ChatMessage.objects.count()) == ([], 0)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"message": "hi", "client_message_id": 7}, {"client_message_id": NOT_A_STRING}),
        ({"message": "hi", "context": {"url": 7}}, {"context": {"url": NOT_A_STRING}}),
        ({"message": "hi", "context": {"content": False}}, {"context": {"content": NOT_A_STRING}}),
        ({"message": "hi", "file_ids": [7]}, {"file_ids": {"0": NOT_A_STRING}}),
        ({"message": None}, {"message": ["This field may not be null."]}),
    ],
)
def test_other_stream_strings_must_be_strings(
    alice_client: APIClient,
    session: ChatSession,
    sends: list[dict[str, Any]],
    body: dict[str, Any],
    errors: dict[str, Any],
) -> None:
    response = stream(alice_client, session, body)
    assert (response.status_code, response.json()) == (400, errors)
    assert sends == []


def test_string_message_still_reaches_the_send(
    alice_client: APIClient, session: ChatSession, sends: list[dict[str, Any]]
) -> None:
    response = stream(alice_client, session, {"message": "hi", "context": {"url": "https://x.test", "extra": 1}})
    assert (response.status_code, response.json()) == (202, {"queued": True})
    assert [(call["message"], call["context"]) for call in sends] == [("hi", {"url": "https://x.test"})]


def test_title_that_is_not_a_string_is_400_on_create_and_rename(alice_client: APIClient, session: ChatSession) -> None:
    created = alice_client.post("/api/chat/sessions", data={"title": 5}, format="json")
    renamed = alice_client.patch(f"/api/chat/sessions/{session.pk}", data={"title": 5}, format="json")
    assert (created.status_code, created.json()) == (400, {"title": NOT_A_STRING})
    assert (renamed.status_code, renamed.json()) == (400, {"title": NOT_A_STRING})
    assert list(ChatSession.objects.values_list("title", flat=True)) == ["kept"]


# ---------------------------------------------------------------- the message length setting


def test_message_length_follows_the_setting(
    alice_client: APIClient, session: ChatSession, sends: list[dict[str, Any]], settings: Any
) -> None:
    # given
    settings.COPILOT_MESSAGE_MAX_CHARS = 10
    # when
    too_long = stream(alice_client, session, {"message": "x" * 11})
    at_limit = stream(alice_client, session, {"message": "x" * 10})
    # then
    assert (too_long.status_code, too_long.json()) == (
        400,
        {"message": ["Ensure this field has no more than 10 characters."]},
    )
    assert at_limit.status_code == 202
    assert [call["message"] for call in sends] == ["x" * 10]


def test_a_raised_message_limit_admits_more_than_the_old_fixed_32000(
    alice_client: APIClient, session: ChatSession, sends: list[dict[str, Any]], settings: Any
) -> None:
    settings.COPILOT_MESSAGE_MAX_CHARS = 40_000
    response = stream(alice_client, session, {"message": "y" * 32_001})
    assert response.status_code == 202
    assert [len(call["message"]) for call in sends] == [32_001]


# ---------------------------------------------------------------- unknown keys


def test_session_create_refuses_unknown_keys_naming_them(alice_client: APIClient) -> None:
    response = alice_client.post(
        "/api/chat/sessions", data={"title": "a", "colour": "red", "user_id": 2}, format="json"
    )
    assert (response.status_code, response.json()) == (
        400,
        {"colour": ["This field is not allowed."], "user_id": ["This field is not allowed."]},
    )
    assert ChatSession.objects.count() == 0


def test_session_create_takes_an_empty_body_and_a_title(alice_client: APIClient) -> None:
    empty = alice_client.post("/api/chat/sessions", data={}, format="json")
    titled = alice_client.post("/api/chat/sessions", data={"title": "Plans"}, format="json")
    assert (empty.status_code, empty.json()["title"]) == (201, None)
    assert (titled.status_code, titled.json()["title"]) == (201, "Plans")
    assert ChatSession.objects.count() == 2


def test_session_create_refuses_a_body_that_is_not_an_object(alice_client: APIClient) -> None:
    response = alice_client.post("/api/chat/sessions", data=["title"], format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]},
    )
    assert ChatSession.objects.count() == 0


# ---------------------------------------------------------------- pagination bounds

PAGINATED = ["/api/chat/sessions", "/api/billing/credits"]


@pytest.mark.parametrize("path", PAGINATED)
@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("offset=9223372036854775808", {"offset": ["Ensure this value is less than or equal to 1000000."]}),
        ("offset=1000001", {"offset": ["Ensure this value is less than or equal to 1000000."]}),
        ("offset=-1", {"offset": ["Ensure this value is greater than or equal to 0."]}),
        ("offset=abc", {"offset": ["A valid integer is required."]}),
        ("offset=1.5", {"offset": ["A valid integer is required."]}),
        ("limit=9223372036854775808", {"limit": ["Ensure this value is less than or equal to 100."]}),
        ("limit=0", {"limit": ["Ensure this value is greater than or equal to 1."]}),
        (
            "limit=x&offset=-5",
            {"limit": ["A valid integer is required."], "offset": ["Ensure this value is greater than or equal to 0."]},
        ),
    ],
)
def test_out_of_range_pagination_is_400_naming_the_parameter(
    alice_client: APIClient, path: str, query: str, errors: dict[str, Any]
) -> None:
    response = alice_client.get(f"{path}?{query}")
    assert (response.status_code, response.json()) == (400, errors)


def test_offset_at_the_maximum_is_an_empty_page(alice_client: APIClient, session: ChatSession) -> None:
    sessions = alice_client.get("/api/chat/sessions?offset=1000000")
    credits = alice_client.get("/api/billing/credits?offset=1000000")
    assert (sessions.status_code, sessions.json()) == (200, {"sessions": [], "total": 1})
    assert (credits.status_code, credits.json()["transactions"], credits.json()["offset"]) == (200, [], 1000000)


def test_offset_maximum_is_a_setting(alice_client: APIClient, settings: Any) -> None:
    settings.COPILOT_API_MAX_OFFSET = 10
    response = alice_client.get("/api/chat/sessions?offset=11")
    assert (response.status_code, response.json()) == (
        400,
        {"offset": ["Ensure this value is less than or equal to 10."]},
    )


def test_huge_before_sequence_is_an_empty_page_not_a_500(alice_client: APIClient, session: ChatSession) -> None:
    response = alice_client.get(f"/api/chat/sessions/{session.pk}?before_sequence=9223372036854775808")
    assert (response.status_code, response.json()["messages"], response.json()["has_more"]) == (200, [], False)
