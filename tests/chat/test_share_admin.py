"""The share links' admin: list, search and change pages, deletion revokes, no add."""

from __future__ import annotations

from typing import Any

from django.test import Client

from chat.models import ChatSession, SharedChat
from chat.services.shares import share_create, snapshot_messages
from chat.shares import share_get_by_token
from tests.factories import ChatMessageFactory


def test_admin_lists_searches_shows_and_deletes_a_share(admin_client: Client, alice: Any) -> None:
    # given
    session = ChatSession.objects.create(user=alice, title="Holiday plans")
    created = share_create(user=alice, session_id=session.pk, hide_tool_internals=True)
    url = f"/admin/chat/sharedchat/{created.share.pk}"
    # when
    listing = admin_client.get("/admin/chat/sharedchat/")
    search = admin_client.get("/admin/chat/sharedchat/", {"q": "alice"})
    miss = admin_client.get("/admin/chat/sharedchat/", {"q": "nobody"})
    change = admin_client.get(f"{url}/change/")
    add = admin_client.get("/admin/chat/sharedchat/add/")
    deleted = admin_client.post(f"{url}/delete/", {"post": "yes"})
    # then
    assert listing.status_code == 200
    assert "Holiday plans" in listing.content.decode()
    assert search.context["cl"].result_count == 1
    assert miss.context["cl"].result_count == 0
    assert change.status_code == 200
    assert add.status_code == 403
    assert deleted.status_code == 302
    assert SharedChat.objects.count() == 0
    assert share_get_by_token(token=created.token) is None


def test_a_running_turns_rows_are_left_out_of_a_snapshot(alice: Any) -> None:
    # given: a finished turn, then a turn still running
    session = ChatSession.objects.create(user=alice)
    done, running = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    rows = [
        ChatMessageFactory(session=session, sequence=0, role="user", content="q1", turn_id=done),
        ChatMessageFactory(session=session, sequence=1, role="assistant", content="a1", turn_id=done),
        ChatMessageFactory(session=session, sequence=2, role="user", content="q2", turn_id=running),
        ChatMessageFactory(session=session, sequence=3, role="assistant", content="half", turn_id=running),
    ]
    # when
    kept = snapshot_messages(rows, hide_tool_internals=False, running_turn_id=running)
    # then
    assert [(row["sequence"], row["content"]) for row in kept] == [(0, "q1"), (1, "a1")]
