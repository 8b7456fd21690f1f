"""`GET /api/chat/search`: the user's chats by title and message text, with snippets.

Runs on SQLite (the `icontains` fallback) and, with `DATABASE_URL` pointing at
PostgreSQL, on its full-text search; cases whose answer differs say which engine.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from django.db import connection
from rest_framework.test import APIClient

from chat.models import ChatMessage, ChatSession
from tests.chat.turns.helpers import person
from tests.factories import ChatMessageFactory

ON_POSTGRESQL = connection.vendor == "postgresql"


Rows = list[tuple[str, str]]


def _session(user: Any, title: str | None, *, hour: int, messages: Rows | None = None) -> ChatSession:
    session = ChatSession.objects.create(user=user, title=title)
    for sequence, (role, content) in enumerate(messages or []):
        ChatMessageFactory(session=session, sequence=sequence, role=role, content=content)
    stamp = dt.datetime(2026, 1, 2, hour, 0, tzinfo=dt.UTC)
    ChatSession.objects.filter(pk=session.pk).update(created_at=stamp, updated_at=stamp)
    session.refresh_from_db()
    return session


def _session_body(session: ChatSession) -> dict[str, Any]:
    return {
        "id": str(session.pk),
        "title": session.title,
        "created_at": session.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": session.updated_at.isoformat().replace("+00:00", "Z"),
        "turn_in_flight": False,
        "model": None,
        "mode": None,
    }


def test_search_finds_a_title_and_a_message_body_with_snippets(
    alice: Any, alice_client: APIClient, django_assert_num_queries: Any
) -> None:
    # given
    by_title = _session(alice, "Kubernetes deploy notes", hour=9, messages=[("user", "hello")])
    by_body = _session(
        alice,
        "Weekend plans",
        hour=10,
        messages=[
            ("user", "How do I deploy a Django app?"),
            ("assistant", "To deploy it, run the migrations first,\n\nthen start daphne."),
            ("user", "thanks"),
        ],
    )
    _session(alice, "Cooking", hour=11, messages=[("user", "A recipe for soup")])
    # when
    with django_assert_num_queries(3):  # count, page, snippets
        response = alice_client.get("/api/chat/search", {"q": "Deploy"})
    # then
    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "session": _session_body(by_body),
                "title_highlights": [],
                "snippet": {
                    "text": "To deploy it, run the migrations first, then start daphne.",
                    "highlights": [[3, 9]],
                    "sequence": 1,
                    "role": "assistant",
                },
            },
            {"session": _session_body(by_title), "title_highlights": [[11, 17]], "snippet": None},
        ],
        "total": 2,
    }


def test_another_users_chats_are_never_found(alice: Any, charlie: Any, charlie_client: APIClient) -> None:
    # given: alice's chat matches by title and by body; charlie has a chat of his own
    _session(alice, "Secret plans", hour=9, messages=[("user", "the secret is 42")])
    own = _session(charlie, "Groceries", hour=9, messages=[("user", "milk")])
    # when
    foreign = charlie_client.get("/api/chat/search", {"q": "secret"})
    mine = charlie_client.get("/api/chat/search", {"q": "milk"})
    # then
    assert (foreign.status_code, foreign.json()) == (200, {"results": [], "total": 0})
    assert mine.json()["total"] == 1
    assert [r["session"]["id"] for r in mine.json()["results"]] == [str(own.pk)]


def test_tool_internals_reasoning_and_notices_are_not_searched(alice: Any, alice_client: APIClient) -> None:
    # given: the word is only in a tool call, a tool output, reasoning and a notice
    session = _session(alice, "Numbers", hour=9, messages=[("user", "what is six times seven")])
    ChatMessageFactory(
        session=session,
        sequence=1,
        role="assistant",
        content="",
        tool_calls=[{"id": "c1", "function": {"name": "calculator", "arguments": '{"x": "zebra"}'}}],
    )
    ChatMessageFactory(session=session, sequence=2, role="tool", tool_call_id="c1", name="calculator", content="zebra")
    ChatMessageFactory(session=session, sequence=3, role="reasoning", content="zebra thinking")
    ChatMessageFactory(session=session, sequence=4, role="assistant", kind="error_notice", content="zebra failed")
    ChatMessageFactory(session=session, sequence=5, role="system", content="zebra system")
    # when
    hidden = alice_client.get("/api/chat/search", {"q": "zebra"})
    shown = alice_client.get("/api/chat/search", {"q": "seven"})
    # then
    assert hidden.json() == {"results": [], "total": 0}
    assert shown.json()["results"][0]["snippet"] == {
        "text": "what is six times seven",
        "highlights": [[18, 23]],
        "sequence": 0,
        "role": "user",
    }


def test_search_pages_newest_first(alice: Any, alice_client: APIClient) -> None:
    # given: five matching chats updated at 9..13 h, one not matching
    sessions = [_session(alice, f"Topic {n}", hour=9 + n, messages=[("user", "about llamas")]) for n in range(5)]
    _session(alice, "Other", hour=20, messages=[("user", "about cats")])
    # when
    first = alice_client.get("/api/chat/search", {"q": "llamas", "limit": 2}).json()
    second = alice_client.get("/api/chat/search", {"q": "llamas", "limit": 2, "offset": 2}).json()
    last = alice_client.get("/api/chat/search", {"q": "llamas", "limit": 2, "offset": 4}).json()
    beyond = alice_client.get("/api/chat/search", {"q": "llamas", "limit": 2, "offset": 6}).json()
    # then
    ids = [str(s.pk) for s in reversed(sessions)]
    assert [r["session"]["id"] for r in first["results"]] == ids[0:2]
    assert [r["session"]["id"] for r in second["results"]] == ids[2:4]
    assert [r["session"]["id"] for r in last["results"]] == ids[4:5]
    assert beyond == {"results": [], "total": 5}
    assert (first["total"], second["total"], last["total"]) == (5, 5, 5)


def test_every_word_must_match_in_one_message(alice: Any, alice_client: APIClient) -> None:
    # given
    both = _session(alice, None, hour=9, messages=[("user", "red apples and green pears")])
    _session(alice, None, hour=10, messages=[("user", "red apples"), ("assistant", "green pears")])
    # when
    body = alice_client.get("/api/chat/search", {"q": "pears red"}).json()
    # then
    assert body == {
        "results": [
            {
                "session": _session_body(both),
                "title_highlights": [],
                "snippet": {
                    "text": "red apples and green pears",
                    "highlights": [[0, 3], [21, 26]],
                    "sequence": 0,
                    "role": "user",
                },
            }
        ],
        "total": 1,
    }


def test_snippet_is_plain_text_cut_around_the_hit(alice: Any, alice_client: APIClient) -> None:
    # given: HTML in a long message, the hit far from the start
    text = "<b>intro</b> " + "word " * 40 + "<script>alert(1)</script> needle here " + "tail " * 40
    _session(alice, "<i>Title</i> needle", hour=9, messages=[("assistant", text)])
    # when
    result = alice_client.get("/api/chat/search", {"q": "needle"}).json()["results"][0]
    # then
    snippet = result["snippet"]
    assert snippet["text"] == (
        "…word word word word <script>alert(1)</script> needle here "
        "tail tail tail tail tail tail tail tail tail tail tail tail tail tail tail tail tail tail tail tail…"
    )
    assert snippet["highlights"] == [[47, 53]]
    assert snippet["text"][47:53] == "needle"
    assert len(snippet["text"]) == 159  # at most SNIPPET_CHARS + the two ellipses, cut at a space
    assert result["title_highlights"] == [[13, 19]]


def test_highlight_offsets_count_code_points(alice: Any, alice_client: APIClient) -> None:
    # given: an emoji (one code point, two UTF-16 units) before the hit
    _session(alice, None, hour=9, messages=[("user", "🎉 Café party tonight")])
    # when
    snippet = alice_client.get("/api/chat/search", {"q": "party"}).json()["results"][0]["snippet"]
    # then
    assert snippet == {"text": "🎉 Café party tonight", "highlights": [[7, 12]], "sequence": 0, "role": "user"}


@pytest.mark.parametrize(
    ("_case", "query", "expected"),
    [
        ("missing", {}, {"q": ["This field is required."]}),
        ("no word", {"q": "?!"}, {"q": ["Enter at least one letter or digit to search for."]}),
        ("too long", {"q": "a" * 201}, {"q": ["Ensure this field has no more than 200 characters."]}),
        ("bad limit", {"q": "x", "limit": 0}, {"limit": ["Ensure this value is greater than or equal to 1."]}),
    ],
)
def test_bad_queries_are_400(
    alice: Any, alice_client: APIClient, _case: str, query: dict[str, Any], expected: dict[str, Any]
) -> None:
    # given
    _session(alice, "x", hour=9)
    # when
    response = alice_client.get("/api/chat/search", query)
    # then
    assert (response.status_code, response.json()) == (400, expected)


def test_search_needs_credentials(api_client: APIClient) -> None:
    response = api_client.get("/api/chat/search", {"q": "x"})
    assert response.status_code == 401


def test_a_word_inside_another_word(alice: Any, alice_client: APIClient) -> None:
    # given
    session = _session(alice, None, hour=9, messages=[("user", "the deployment failed")])
    # when
    prefix = alice_client.get("/api/chat/search", {"q": "depl"}).json()
    inside = alice_client.get("/api/chat/search", {"q": "ploy"}).json()
    # then: a prefix matches everywhere; the inside of a word only on SQLite's substring fallback
    assert prefix["results"][0]["snippet"]["highlights"] == [[4, 8]]
    if ON_POSTGRESQL:
        assert inside == {"results": [], "total": 0}
    else:
        assert [r["session"]["id"] for r in inside["results"]] == [str(session.pk)]
        assert inside["results"][0]["snippet"]["highlights"] == [[6, 10]]
    assert ChatMessage.objects.count() == 1


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_search_through_daphne_with_api_keys(daphne_server: str) -> None:
    # given: alice's and charlie's chats both mention "invoice"
    alice, charlie = person("alice"), person("charlie")
    ChatSession.objects.filter(pk=alice.session.pk).update(title="Invoices")
    ChatMessageFactory(session=alice.session, sequence=0, role="user", content="Where is the invoice for May?")
    ChatMessageFactory(session=charlie.session, sequence=0, role="user", content="charlie's invoice")
    session = ChatSession.objects.get(pk=alice.session.pk)
    # when
    found = httpx.get(f"{daphne_server}/api/chat/search", params={"q": "invoice may"}, headers=alice.headers)
    anonymous = httpx.get(f"{daphne_server}/api/chat/search", params={"q": "invoice"})
    # then
    assert found.status_code == 200
    assert found.json() == {
        "results": [
            {
                "session": _session_body(session),
                "title_highlights": [[0, 7]],  # a word found in the title is marked there too
                "snippet": {
                    "text": "Where is the invoice for May?",
                    "highlights": [[13, 20], [25, 28]],
                    "sequence": 0,
                    "role": "user",
                },
            }
        ],
        "total": 1,
    }
    assert anonymous.status_code == 401
