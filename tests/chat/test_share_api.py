"""Share links through daphne: create, the public snapshot page, hidden tool internals,
listing, revocation, and another user's attempts; every public answer is `noindex`."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import uuid
from typing import Any

import httpx
import pytest

from chat.models import ChatMessage, ChatSession, SharedChat
from chat.shares import share_token_hash
from tests.chat.turns.helpers import Person, person
from tests.factories import ChatMessageFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STAMP = dt.datetime(2026, 1, 2, 9, 30, tzinfo=dt.UTC)
ISO = "2026-01-02T09:30:00Z"
TOOL_CALLS = [
    {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}
]
SNAPSHOT_RE = re.compile(r'<script id="shared-snapshot" type="application/json">(.*?)</script>', re.S)


def _transcript(p: Person) -> ChatSession:
    ChatSession.objects.filter(pk=p.session.pk).update(title="Maths <b>help</b>")
    rows = [
        {"role": "user", "content": "What is 6*7?"},
        {"role": "reasoning", "content": "Use the calculator."},
        {"role": "assistant", "content": "", "tool_calls": TOOL_CALLS},
        {"role": "tool", "content": '{"result": 42}', "tool_call_id": "c1", "name": "calculator"},
        {"role": "assistant", "content": "It is **42**.", "duration_ms": 1200},
        {"role": "system", "content": "platform note"},
    ]
    for sequence, row in enumerate(rows):
        ChatMessageFactory(session=p.session, sequence=sequence, **row)
    ChatMessage.objects.filter(session=p.session).update(created_at=STAMP)
    return ChatSession.objects.get(pk=p.session.pk)


def _row(sequence: int, role: str, content: str, **extra: Any) -> dict[str, Any]:
    base = {
        "sequence": sequence,
        "role": role,
        "kind": "message",
        "content": content,
        "name": "",
        "tool_call_id": "",
        "tool_calls": [],
        "duration_ms": None,
        "created_at": ISO,
    }
    return {**base, **extra}


FULL_SNAPSHOT = [
    _row(0, "user", "What is 6*7?"),
    _row(1, "reasoning", "Use the calculator."),
    _row(2, "assistant", "", tool_calls=TOOL_CALLS),
    _row(3, "tool", '{"result": 42}', tool_call_id="c1", name="calculator"),
    _row(4, "assistant", "It is **42**.", duration_ms=1200),
]
HIDDEN_SNAPSHOT = [
    _row(0, "user", "What is 6*7?"),
    _row(1, "reasoning", "Use the calculator."),
    _row(4, "assistant", "It is **42**.", duration_ms=1200),
]


def _create(base: str, p: Person, session: ChatSession, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{base}/api/chat/sessions/{session.pk}/shares", json=body or {}, headers=p.headers)


def _snapshot(page: httpx.Response) -> Any:
    match = SNAPSHOT_RE.search(page.text)
    assert match is not None
    return json.loads(match.group(1))


def _share_body(share: SharedChat) -> dict[str, Any]:
    return {
        "id": str(share.pk),
        "session_id": str(share.session_id),
        "title": share.title,
        "hide_tool_internals": share.hide_tool_internals,
        "created_at": share.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_create_a_link_and_read_the_snapshot_without_logging_in(daphne_server: str) -> None:
    # given
    alice = person("alice")
    session = _transcript(alice)
    # when
    created = _create(daphne_server, alice, session)
    # then: the link is returned once; only its hash is stored
    assert created.status_code == 201
    share = SharedChat.objects.get()
    token = created.json()["url"].rsplit("/", 1)[1]
    assert created.json() == {**_share_body(share), "url": f"{daphne_server}/share/{token}"}
    assert (share.session_id, share.title, share.hide_tool_internals) == (session.pk, "Maths <b>help</b>", False)
    assert len(token) == 43
    assert share.token_hash == share_token_hash(token)
    assert token not in json.dumps(share.messages)
    # when: anyone opens it
    page = httpx.get(f"{daphne_server}/share/{token}")
    # then
    assert page.status_code == 200
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<meta name="robots" content="noindex, nofollow">' in page.text
    assert "<title>Maths &lt;b&gt;help&lt;/b&gt; · Copilot</title>" in page.text
    assert "Maths <b>help</b>" not in page.text
    assert _snapshot(page) == FULL_SNAPSHOT
    assert "platform note" not in page.text
    assert html.escape("tool calls hidden") not in page.text


def test_hidden_tool_internals_never_reach_the_page(daphne_server: str) -> None:
    # given
    alice = person("alice")
    session = _transcript(alice)
    # when
    created = _create(daphne_server, alice, session, {"hide_tool_internals": True})
    page = httpx.get(created.json()["url"])
    # then
    assert created.status_code == 201
    assert created.json()["hide_tool_internals"] is True
    assert _snapshot(page) == HIDDEN_SNAPSHOT
    assert "expression" not in page.text
    assert '"c1"' not in page.text
    assert "result" not in page.text
    assert "tool calls hidden" in page.text


def test_the_snapshot_does_not_change_with_the_chat(daphne_server: str) -> None:
    # given
    alice = person("alice")
    session = _transcript(alice)
    url = _create(daphne_server, alice, session).json()["url"]
    # when: the chat goes on and is renamed
    ChatMessageFactory(session=session, sequence=6, role="user", content="a later question")
    httpx.patch(f"{daphne_server}/api/chat/sessions/{session.pk}", json={"title": "Renamed"}, headers=alice.headers)
    page = httpx.get(url)
    # then
    assert _snapshot(page) == FULL_SNAPSHOT
    assert "a later question" not in page.text
    assert "Renamed" not in page.text


def test_list_own_links_newest_first(daphne_server: str) -> None:
    # given
    alice = person("alice")
    bob = person("bob")
    session = _transcript(alice)
    other = ChatSession.objects.create(user=alice.user, title="Other")
    first = _create(daphne_server, alice, session).json()
    second = _create(daphne_server, alice, other, {"hide_tool_internals": True}).json()
    _create(daphne_server, bob, bob.session)
    # when
    mine = httpx.get(f"{daphne_server}/api/chat/shares", headers=alice.headers)
    of_session = httpx.get(
        f"{daphne_server}/api/chat/shares", params={"session_id": str(session.pk)}, headers=alice.headers
    )
    paged = httpx.get(f"{daphne_server}/api/chat/shares", params={"limit": 1, "offset": 1}, headers=alice.headers)
    # then
    without_url = [{k: v for k, v in s.items() if k != "url"} for s in (second, first)]
    assert mine.json() == {"shares": without_url, "total": 2}
    assert of_session.json() == {"shares": without_url[1:], "total": 1}
    assert paged.json() == {"shares": without_url[1:], "total": 2}


def test_a_revoked_link_is_404_and_another_user_cannot_revoke(daphne_server: str) -> None:
    # given
    alice = person("alice")
    charlie = person("charlie")
    session = _transcript(alice)
    created = _create(daphne_server, alice, session).json()
    share_url = f"{daphne_server}/api/chat/shares/{created['id']}"
    # when: charlie tries
    foreign = httpx.delete(share_url, headers=charlie.headers)
    # then: 404, and the link still works
    assert (foreign.status_code, foreign.json()) == (404, {"detail": f"Share {created['id']} not found."})
    assert httpx.get(created["url"]).status_code == 200
    assert SharedChat.objects.count() == 1
    # when: alice revokes
    revoked = httpx.delete(share_url, headers=alice.headers)
    again = httpx.delete(share_url, headers=alice.headers)
    page = httpx.get(created["url"])
    # then
    assert revoked.status_code == 204
    assert (again.status_code, again.json()) == (404, {"detail": f"Share {created['id']} not found."})
    assert page.status_code == 404
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert page.headers["cache-control"] == "no-store"
    assert "This link does not work" in page.text
    assert "What is 6*7?" not in page.text
    assert SharedChat.objects.count() == 0
    assert httpx.get(f"{daphne_server}/api/chat/shares", headers=alice.headers).json() == {"shares": [], "total": 0}


def test_unknown_tokens_and_deleted_chats_are_404(daphne_server: str) -> None:
    # given
    alice = person("alice")
    session = _transcript(alice)
    url = _create(daphne_server, alice, session).json()["url"]
    # when
    unknown = httpx.get(f"{daphne_server}/share/{'A' * 43}")
    too_long = httpx.get(f"{daphne_server}/share/{'A' * 500}")
    httpx.delete(f"{daphne_server}/api/chat/sessions/{session.pk}", headers=alice.headers)
    deleted = httpx.get(url)
    # then
    assert [r.status_code for r in (unknown, too_long, deleted)] == [404, 404, 404]
    assert {r.headers["x-robots-tag"] for r in (unknown, too_long, deleted)} == {"noindex, nofollow"}
    assert SharedChat.objects.count() == 0


def test_create_refuses_bad_bodies_and_another_users_chat(daphne_server: str) -> None:
    # given
    alice = person("alice")
    charlie = person("charlie")
    session = _transcript(alice)
    url = f"{daphne_server}/api/chat/sessions/{session.pk}/shares"
    # when
    not_bool = httpx.post(url, json={"hide_tool_internals": "yes"}, headers=alice.headers)
    unknown_key = httpx.post(url, json={"public": True}, headers=alice.headers)
    foreign = httpx.post(url, json={}, headers=charlie.headers)
    missing = httpx.post(f"{daphne_server}/api/chat/sessions/{uuid.UUID(int=1)}/shares", json={}, headers=alice.headers)
    anonymous = httpx.post(url, json={})
    # then
    assert (not_bool.status_code, not_bool.json()) == (400, {"hide_tool_internals": ["Must be a valid boolean."]})
    assert (unknown_key.status_code, unknown_key.json()) == (400, {"public": ["This field is not allowed."]})
    assert (foreign.status_code, foreign.json()) == (404, {"detail": f"Session {session.pk} not found."})
    assert missing.status_code == 404
    assert anonymous.status_code == 401
    assert SharedChat.objects.count() == 0
