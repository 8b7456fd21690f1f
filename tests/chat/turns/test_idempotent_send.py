"""The same `client_message_id` sent twice at once makes one user row and one turn."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from django.db import IntegrityError, transaction

from chat.models import ChatMessage, ChatSession, TurnUsage
from chat.turns.pending import pending_peek
from chat.turns.registry import turn_meta_get
from tests.chat.turns.helpers import Person, SseResult, fake, person, read_sse, wait_until
from tests.factories import UserFactory


def _idle(session_id: object) -> bool:
    meta = turn_meta_get(session_id)
    return meta is None or not meta.is_running


def _send_twice_at_once(url: str, p: Person, body: dict[str, Any]) -> list[int]:
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait()
        with (
            httpx.Client(timeout=60) as client,
            # a JSON client: a queued copy answers 202 JSON (an SSE client would get the follow-up stream)
            client.stream("POST", url, headers={**p.headers, "Accept": "application/json"}, json=body) as response,
        ):
            statuses.append(response.status_code)
            response.read()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    return statuses


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_copies_of_a_message_make_one_row_and_one_turn(stack: str) -> None:
    alice = person("alice")
    for round_number in range(6):
        # given: an idle chat
        session = ChatSession.objects.create(user=alice.user)
        url = f"{stack}/api/chat/sessions/{session.id}/stream"
        client_id = f"race-{round_number}"
        body = {"message": f"hello {round_number} " + fake({"text": "one answer"}), "client_message_id": client_id}
        # when: both copies at once (one claims the turn, the other loses the claim)
        statuses = _send_twice_at_once(url, alice, body)
        # then
        wait_until(lambda s=session: _idle(s.id) and TurnUsage.objects.filter(session=s).count() >= 1)
        assert statuses == [200, 200], round_number  # the copy streams the same turn
        assert ChatMessage.objects.filter(session=session, client_message_id=client_id).count() == 1, round_number
        assert ChatMessage.objects.filter(session=session, role="user").count() == 1, round_number
        assert TurnUsage.objects.filter(session=session).count() == 1, round_number
        assert list(TurnUsage.objects.filter(session=session).values_list("outcome", flat=True)) == ["completed"]
        assert ChatMessage.objects.filter(session=session, role="assistant").count() == 1, round_number
        assert pending_peek(session.id) == []


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_copies_queued_behind_a_running_turn_are_saved_once_with_their_id(stack: str) -> None:
    # given: a slow turn running
    alice = person("alice")
    url = f"{stack}/api/chat/sessions/{alice.session.id}/stream"
    streamed = SseResult(0, {})
    # 9 s of streaming: both copies and the peek land while it runs, even on a loaded machine
    first = "slow " + fake({"text": "z" * 30, "chunk_size": 1, "delay_ms": 300})
    reader = threading.Thread(
        target=lambda: read_sse("POST", url, headers=alice.headers, json_body={"message": first}, into=streamed)
    )
    reader.start()
    wait_until(lambda: "text-delta" in streamed.types)
    # when: two copies of a follow-up at once, both while the turn runs
    body = {"message": "and also this", "client_message_id": "queued-1"}
    statuses = _send_twice_at_once(url, alice, body)
    # then: one is queued (202), the other is recognised as its repeat
    assert sorted(statuses) == [200, 202]
    assert [(m.content, m.client_message_id) for m in pending_peek(alice.session.id)] == [("and also this", "queued-1")]
    reader.join(timeout=60)
    # and the next turn saves it once, with its id
    wait_until(lambda: TurnUsage.objects.filter(session=alice.session).count() == 2 and _idle(alice.session.id))
    rows = list(
        ChatMessage.objects.filter(session=alice.session, role="user")
        .order_by("sequence")
        .values_list("content", "client_message_id")
    )
    assert rows == [(first, None), ("and also this", "queued-1")]
    # and a later retry of it is a duplicate, not a third turn
    retry = read_sse("POST", url, headers=alice.headers, json_body=body)
    assert retry.status == 200
    assert ChatMessage.objects.filter(session=alice.session, client_message_id="queued-1").count() == 1
    assert TurnUsage.objects.filter(session=alice.session).count() == 2


@pytest.mark.django_db
def test_the_database_refuses_a_second_row_with_the_same_client_message_id() -> None:
    # given
    session = ChatSession.objects.create(user=UserFactory(username="bob"))
    other = ChatSession.objects.create(user=session.user)
    ChatMessage.objects.create(session=session, sequence=0, role="user", content="a", client_message_id="c-1")
    # then: the same id in another chat and rows without an id are fine
    ChatMessage.objects.create(session=other, sequence=0, role="user", content="a", client_message_id="c-1")
    ChatMessage.objects.create(session=session, sequence=1, role="user", content="b", client_message_id=None)
    ChatMessage.objects.create(session=session, sequence=2, role="user", content="c", client_message_id=None)
    # and the same id twice in one chat is refused by the database itself
    with (
        pytest.raises(IntegrityError, match="chat_message_client_id_unique|UNIQUE constraint failed"),
        transaction.atomic(),
    ):
        ChatMessage.objects.create(session=session, sequence=3, role="user", content="d", client_message_id="c-1")
    assert ChatMessage.objects.filter(session=session, client_message_id="c-1").count() == 1


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_followup_taken_at_a_tool_round_keeps_its_id_and_its_retry_is_a_duplicate(stack: str, slow_http: str) -> None:
    # given: a turn busy in a slow tool
    alice = person("alice")
    url = f"{stack}/api/chat/sessions/{alice.session.id}/stream"
    script = fake({"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]}, {"text": "all done"})
    streamed = SseResult(0, {})
    reader = threading.Thread(
        target=lambda: read_sse(
            "POST", url, headers=alice.headers, json_body={"message": "fetch " + script}, into=streamed
        )
    )
    reader.start()
    wait_until(
        lambda: ChatMessage.objects.filter(session=alice.session, role="assistant").exclude(tool_calls=[]).exists()
    )
    # when: a follow-up with an id, which the turn takes at its next tool round
    body = {"message": "also check the title", "client_message_id": "round-1"}
    queued = httpx.post(url, headers={**alice.headers, "Accept": "application/json"}, json=body, timeout=10)
    reader.join(timeout=60)
    # then: its row carries the id
    assert queued.status_code == 202
    assert streamed.text().endswith("all done")
    assert any(chunk["type"] == "data-pending-drained" for _, chunk in streamed.events)
    assert list(
        ChatMessage.objects.filter(session=alice.session, role="user")
        .order_by("sequence")
        .values_list("content", "client_message_id")
    ) == [("fetch " + script, None), ("also check the title", "round-1")]
    # and a retry of it starts nothing and saves nothing
    wait_until(lambda: _idle(alice.session.id))
    retry = read_sse("POST", url, headers=alice.headers, json_body=body)
    assert retry.status == 200
    assert ChatMessage.objects.filter(session=alice.session, client_message_id="round-1").count() == 1
    assert TurnUsage.objects.filter(session=alice.session).count() == 1
