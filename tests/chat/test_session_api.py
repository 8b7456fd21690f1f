from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from chat.models import ChatMessage, ChatSession
from tests.factories import ChatMessageFactory


def test_create_and_list_sessions(alice_client: APIClient, alice: Any) -> None:
    # when
    created = alice_client.post("/api/chat/sessions", {}, format="json")
    listing = alice_client.get("/api/chat/sessions")
    # then
    assert created.status_code == 201
    session = ChatSession.objects.get(user=alice)
    assert created.json()["id"] == str(session.id)
    assert created.json()["title"] is None
    assert created.json()["turn_in_flight"] is False
    assert listing.json()["total"] == 1
    assert [s["id"] for s in listing.json()["sessions"]] == [str(session.id)]


def test_another_users_session_answers_404_everywhere(alice: Any, charlie_client: APIClient) -> None:
    # given
    session = ChatSession.objects.create(user=alice, title="Private")
    ChatMessageFactory(session=session, sequence=0, content="secret")
    expected = {"detail": f"Session {session.id} not found."}
    # when
    detail = charlie_client.get(f"/api/chat/sessions/{session.id}")
    patch = charlie_client.patch(f"/api/chat/sessions/{session.id}", {"title": "Mine now"}, format="json")
    delete = charlie_client.delete(f"/api/chat/sessions/{session.id}")
    detach = charlie_client.delete(f"/api/chat/sessions/{session.id}/stream")
    missing = charlie_client.get("/api/chat/sessions/00000000-0000-4000-8000-000000000000")
    garbage = charlie_client.get("/api/chat/sessions/not-a-uuid")
    # then
    assert (detail.status_code, detail.json()) == (404, expected)
    assert (patch.status_code, patch.json()) == (404, expected)
    assert (delete.status_code, delete.json()) == (404, expected)
    assert (detach.status_code, detach.json()) == (404, expected)
    assert missing.status_code == 404
    assert garbage.status_code == 404
    assert charlie_client.get("/api/chat/sessions").json() == {"sessions": [], "total": 0}
    session.refresh_from_db()
    assert session.title == "Private"
    assert ChatMessage.objects.filter(session=session).count() == 1


def test_session_detail_pages_backwards(alice: Any, alice_client: APIClient) -> None:
    # given
    session = ChatSession.objects.create(user=alice)
    for seq in range(5):
        ChatMessageFactory(
            session=session, sequence=seq, role="user" if seq % 2 == 0 else "assistant", content=f"m{seq}"
        )
    # when
    newest = alice_client.get(f"/api/chat/sessions/{session.id}?limit=2").json()
    older = alice_client.get(f"/api/chat/sessions/{session.id}?limit=2&before_sequence=3").json()
    oldest = alice_client.get(f"/api/chat/sessions/{session.id}?limit=2&before_sequence=1").json()
    # then
    assert [m["content"] for m in newest["messages"]] == ["m3", "m4"]
    assert (newest["has_more"], newest["oldest_sequence"]) == (True, 3)
    assert [m["content"] for m in older["messages"]] == ["m1", "m2"]
    assert [m["content"] for m in oldest["messages"]] == ["m0"]
    assert (oldest["has_more"], oldest["oldest_sequence"]) == (False, 0)


def test_rename_rejects_blank_title(alice: Any, alice_client: APIClient) -> None:
    session = ChatSession.objects.create(user=alice, title="Old")
    response = alice_client.patch(f"/api/chat/sessions/{session.id}", {"title": "   "}, format="json")
    assert response.status_code == 400
    assert response.json() == {"title": ["Title must not be blank"]}
    session.refresh_from_db()
    assert session.title == "Old"


def test_rename_and_delete(alice: Any, alice_client: APIClient) -> None:
    session = ChatSession.objects.create(user=alice, title="Old")
    renamed = alice_client.patch(f"/api/chat/sessions/{session.id}", {"title": "New"}, format="json")
    assert renamed.status_code == 200
    assert renamed.json()["title"] == "New"
    deleted = alice_client.delete(f"/api/chat/sessions/{session.id}")
    assert deleted.status_code == 204
    assert not ChatSession.objects.filter(pk=session.pk).exists()


def test_delete_stops_the_running_turn_and_drops_queued_messages(
    alice: Any, alice_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a running turn with a queued follow-up
    from chat.turns import scripts as rs
    from chat.turns.pending import PendingMessage, pending_push
    from chat.turns.registry import turn_claim

    session = ChatSession.objects.create(user=alice)
    turn_id = turn_claim(session_id=session.pk, user_id=alice.pk, origin_id="chat_stream", origin_name="chat")
    pending_push(session.pk, PendingMessage(content="later"))
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = alice_client.delete(f"/api/chat/sessions/{session.id}")
    # then
    assert response.status_code == 204
    assert len(callbacks) == 1
    assert rs.redis_client().get(rs.cancel_key(session.pk)) == turn_id.encode()  # type: ignore[union-attr]
    assert rs.redis_client().exists(rs.pending_key(session.pk)) == 0
    assert not ChatSession.objects.filter(pk=session.pk).exists()


def test_the_31st_queued_send_in_a_minute_is_refused_and_not_queued(alice: Any, alice_client: APIClient) -> None:
    # given: a running turn, so every send is queued
    from chat.turns import scripts as rs
    from chat.turns.pending import pending_peek
    from chat.turns.registry import turn_claim

    # (four chats: one chat's buffer holds ten, the limit counts across every chat)
    sessions = [ChatSession.objects.create(user=alice) for _ in range(4)]
    for session in sessions:
        turn_claim(session_id=session.pk, user_id=alice.pk, origin_id="chat_stream", origin_name="chat")
    # when
    answers = [
        alice_client.post(
            f"/api/chat/sessions/{sessions[i // 10].id}/stream",
            {"message": f"m{i}"},
            format="json",
            HTTP_ACCEPT="application/json",  # a JSON-only client: queued sends answer 202 JSON
        )
        for i in range(31)
    ]
    # then: thirty are queued, the 31st is refused
    assert [a.status_code for a in answers] == [202] * 30 + [429]
    assert answers[29].json() == {"buffer_length": 10, "max_buffer_length": 10, "turn_in_flight": True}
    assert answers[30].json() == {
        "detail": "Too many queued message requests this minute: limit is 30 per 60s across all sessions"
    }
    assert [[m.content for m in pending_peek(s.pk)] for s in sessions] == [
        [f"m{i}" for i in range(0, 10)],
        [f"m{i}" for i in range(10, 20)],
        [f"m{i}" for i in range(20, 30)],
        [],
    ]
    assert 0 < rs.redis_client().ttl(rs.pending_calls_key(alice.pk)) <= 60


@pytest.mark.django_db
def test_the_current_branch_is_what_the_session_shows_and_its_helper_reads(alice: Any, alice_client: Any) -> None:
    # given: Q A, and an edit of Q (Q2, sequence 2) answered by A2
    from chat.selectors import session_branch_messages

    session = ChatSession.objects.create(user=alice)
    ChatMessageFactory(session=session, sequence=0, role="user", content="Q")
    ChatMessageFactory(session=session, sequence=1, role="assistant", content="A")
    ChatMessageFactory(session=session, sequence=2, role="user", content="Q2", parent_sequence=None)
    ChatMessageFactory(session=session, sequence=3, role="assistant", content="A2")
    # when
    shown = alice_client.get(f"/api/chat/sessions/{session.id}").json()["messages"]
    # then
    assert [(m["sequence"], m["content"], m["versions"]) for m in shown] == [
        (2, "Q2", {"position": 2, "count": 2, "sequences": [0, 2]}),
        (3, "A2", None),
    ]
    session.refresh_from_db()
    assert [row.content for row in session_branch_messages(session=session)] == ["Q2", "A2"]
