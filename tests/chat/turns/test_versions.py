"""Edit, regenerate and switch versions end to end: daphne + a real Celery worker + the scripted LLM.

The transcript is a tree; the session API shows the current branch, each message with
its versions, and the model is given exactly that branch (checked in the requests the
scripted LLM received).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from chat.models import ChatMessage, ChatSession, TurnUsage
from chat.turns.pending import pending_peek
from chat.turns.registry import turn_meta_get
from tests.chat.turns.helpers import Person, SseResult, WsClient, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TURN_IN_PROGRESS = {
    "detail": "A reply is still being written in this chat. Stop it or wait until it finishes, then try again.",
    "code": "turn_in_progress",
}


def _idle(p: Person) -> bool:
    meta = turn_meta_get(p.session.id)
    return meta is None or not meta.is_running


def _send(base: str, p: Person, message: str) -> SseResult:
    result = read_sse(
        "POST", f"{base}/api/chat/sessions/{p.session.id}/stream", headers=p.headers, json_body={"message": message}
    )
    assert result.status == 200, result.json_body
    wait_until(lambda: _idle(p))
    return result


def _version(base: str, p: Person, sequence: int, body: dict[str, Any]) -> SseResult:
    url = f"{base}/api/chat/sessions/{p.session.id}/messages/{sequence}/versions"
    result = read_sse("POST", url, headers=p.headers, json_body=body)
    if result.status == 200:
        wait_until(lambda: _idle(p))
    return result


def _detail(base: str, p: Person) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/chat/sessions/{p.session.id}", headers=p.headers, timeout=10)
    assert response.status_code == 200
    return dict(response.json())


def _shown(detail: dict[str, Any]) -> list[tuple[int, int | None, str, str | None, Any]]:
    return [(m["sequence"], m["parent_sequence"], m["role"], m["content"], m["versions"]) for m in detail["messages"]]


def _model_saw(fake_llm: Any) -> list[tuple[str, str]]:
    """The conversation of the last completion request, without the system prompt."""
    completions = [r for r in fake_llm.requests if r["path"].endswith("/chat/completions")]
    return [(m["role"], m["content"]) for m in completions[-1]["body"]["messages"] if m["role"] != "system"]


def test_editing_a_message_twice_keeps_three_versions_and_the_model_sees_only_the_last(
    stack: str, fake_llm: Any
) -> None:
    # given
    alice = person("alice")
    first, second, third = (
        "Plan a trip " + fake({"text": "Plan one."}),
        "Plan a cheap trip " + fake({"text": "Plan two."}),
        "Plan a quiet trip " + fake({"text": "Plan three."}),
    )
    _send(stack, alice, first)
    # when
    edited = _version(stack, alice, 0, {"message": second})
    again = _version(stack, alice, 0, {"message": third})
    # then
    assert (edited.status, edited.text(), again.status, again.text()) == (200, "Plan two.", 200, "Plan three.")
    assert _shown(_detail(stack, alice)) == [
        (4, None, "user", third, {"position": 3, "count": 3, "sequences": [0, 2, 4]}),
        (5, 4, "assistant", "Plan three.", None),
    ]
    assert _model_saw(fake_llm) == [("user", third)]
    assert list(ChatMessage.objects.order_by("sequence").values_list("sequence", "parent_sequence", "content")) == [
        (0, None, first),
        (1, 0, "Plan one."),
        (2, None, second),
        (3, 2, "Plan two."),
        (4, None, third),
        (5, 4, "Plan three."),
    ]
    # every version's turn is a normal turn: recorded (and metered) once each
    assert TurnUsage.objects.filter(session=alice.session, outcome="completed").count() == 3
    assert ChatSession.objects.get(pk=alice.session.pk).leaf_sequence == 5


def test_switching_the_branch_changes_what_the_next_turn_sends_the_model(stack: str, fake_llm: Any) -> None:
    # given: Q1 A1 Q2 A2, then Q2 edited into Q2' A2'
    alice = person("alice")
    q1, q2, q2b = "Q1 " + fake({"text": "A1"}), "Q2 " + fake({"text": "A2"}), "Q2b " + fake({"text": "A2b"})
    _send(stack, alice, q1)
    _send(stack, alice, q2)
    _version(stack, alice, 2, {"message": q2b})
    assert _model_saw(fake_llm) == [("user", q1), ("assistant", "A1"), ("user", q2b)]
    # when: the first version of Q2 is shown again
    switched = httpx.put(
        f"{stack}/api/chat/sessions/{alice.session.id}/branch",
        headers=alice.headers,
        json={"sequence": 2},
        timeout=10,
    )
    # then
    assert switched.status_code == 200
    versions = {"position": 1, "count": 2, "sequences": [2, 4]}
    assert _shown(switched.json()) == [
        (0, None, "user", q1, None),
        (1, 0, "assistant", "A1", None),
        (2, 1, "user", q2, versions),
        (3, 2, "assistant", "A2", None),
    ]
    assert switched.json()["active_turn"] is None
    # when: the next message
    q3 = "Q3 " + fake({"text": "A3"})
    _send(stack, alice, q3)
    # then: the model saw exactly the shown branch, and the new rows continue it
    assert _model_saw(fake_llm) == [("user", q1), ("assistant", "A1"), ("user", q2), ("assistant", "A2"), ("user", q3)]
    assert _shown(_detail(stack, alice))[-2:] == [(6, 3, "user", q3, None), (7, 6, "assistant", "A3", None)]
    # and switching back to Q2' shows its newest continuation
    back = httpx.put(
        f"{stack}/api/chat/sessions/{alice.session.id}/branch", headers=alice.headers, json={"sequence": 4}, timeout=10
    )
    assert [m["sequence"] for m in back.json()["messages"]] == [0, 1, 4, 5]


def test_regenerating_an_answer_asks_the_same_question_again_and_keeps_the_first_answer(
    stack: str, fake_llm: Any
) -> None:
    # given
    alice = person("alice")
    question = "Name a colour " + fake({"text": "Blue."})
    _send(stack, alice, question)
    fake_llm.reset()
    # when
    regenerated = _version(stack, alice, 1, {})
    # then
    assert (regenerated.status, regenerated.text()) == (200, "Blue.")
    assert len([r for r in fake_llm.requests if r["path"].endswith("/chat/completions")]) == 1
    assert _model_saw(fake_llm) == [("user", question)]
    assert _shown(_detail(stack, alice)) == [
        (0, None, "user", question, None),
        (2, 0, "assistant", "Blue.", {"position": 2, "count": 2, "sequences": [1, 2]}),
    ]
    ui = httpx.get(f"{stack}/api/chat/sessions/{alice.session.id}/ui-messages", headers=alice.headers, timeout=10)
    assert [(m["role"], m["metadata"].get("versions")) for m in ui.json()["messages"]] == [
        ("user", None),
        ("assistant", {"position": 2, "count": 2, "sequences": [1, 2]}),
    ]
    assert ChatMessage.objects.filter(session=alice.session, role="user").count() == 1
    assert TurnUsage.objects.filter(session=alice.session, outcome="completed").count() == 2


def test_editing_regenerating_or_switching_while_a_turn_runs_is_409_and_changes_nothing(
    stack: str, fake_llm: Any
) -> None:
    # given: a first exchange, then a slow turn running
    alice = person("alice")
    _send(stack, alice, "Hi " + fake({"text": "Hello."}))
    slow = "Count slowly " + fake({"text": "one two three four five six", "chunk_size": 4, "delay_ms": 150})
    streamed = SseResult(0, {})
    reader = threading.Thread(
        target=read_sse,
        args=("POST", f"{stack}/api/chat/sessions/{alice.session.id}/stream"),
        kwargs={"headers": alice.headers, "json_body": {"message": slow}, "into": streamed},
    )
    reader.start()
    wait_until(lambda: "text-delta" in streamed.types)
    rows_before = list(ChatMessage.objects.order_by("sequence").values_list("sequence", "content"))
    leaf_before = ChatSession.objects.get(pk=alice.session.pk).leaf_sequence
    # when
    base = f"{stack}/api/chat/sessions/{alice.session.id}"
    edit = httpx.post(f"{base}/messages/0/versions", headers=alice.headers, json={"message": "Hey"}, timeout=10)
    regenerate = httpx.post(f"{base}/messages/1/versions", headers=alice.headers, json={}, timeout=10)
    switch = httpx.put(f"{base}/branch", headers=alice.headers, json={"sequence": 0}, timeout=10)
    # then
    assert [(r.status_code, r.json()) for r in (edit, regenerate, switch)] == [(409, TURN_IN_PROGRESS)] * 3
    assert list(ChatMessage.objects.order_by("sequence").values_list("sequence", "content")) == rows_before
    assert ChatSession.objects.get(pk=alice.session.pk).leaf_sequence == leaf_before
    assert pending_peek(alice.session.id) == []
    reader.join(30)
    wait_until(lambda: _idle(alice))
    assert streamed.text() == "one two three four five six"
    assert TurnUsage.objects.filter(session=alice.session).count() == 2
    assert [(m["role"], m["content"]) for m in _detail(stack, alice)["messages"]] == [
        ("user", "Hi " + fake({"text": "Hello."})),
        ("assistant", "Hello."),
        ("user", slow),
        ("assistant", "one two three four five six"),
    ]


def test_versions_refuse_the_wrong_row_and_another_users_chat(stack: str) -> None:
    # given
    alice, charlie = person("alice"), person("charlie")
    _send(stack, alice, "Hi " + fake({"text": "Hello."}))
    base = f"{stack}/api/chat/sessions/{alice.session.id}"
    # when
    edit_answer = httpx.post(f"{base}/messages/1/versions", headers=alice.headers, json={"message": "x"}, timeout=10)
    regenerate_question = httpx.post(f"{base}/messages/0/versions", headers=alice.headers, json={}, timeout=10)
    missing = httpx.post(f"{base}/messages/99/versions", headers=alice.headers, json={"message": "x"}, timeout=10)
    foreign = httpx.post(f"{base}/messages/0/versions", headers=charlie.headers, json={"message": "x"}, timeout=10)
    foreign_switch = httpx.put(f"{base}/branch", headers=charlie.headers, json={"sequence": 0}, timeout=10)
    missing_switch = httpx.put(f"{base}/branch", headers=alice.headers, json={"sequence": 99}, timeout=10)
    # then
    assert (edit_answer.status_code, edit_answer.json()) == (
        400,
        {"detail": "Only your own messages can be edited; regenerate an answer instead.", "code": "not_editable"},
    )
    assert (regenerate_question.status_code, regenerate_question.json()) == (
        400,
        {"detail": "A message of yours is edited, not regenerated.", "code": "not_editable"},
    )
    assert (missing.status_code, missing.json()) == (404, {"detail": "Message 99 not found in this chat."})
    assert (foreign.status_code, foreign.json()) == (404, {"detail": f"Session {alice.session.id} not found."})
    assert foreign_switch.status_code == 404
    assert (missing_switch.status_code, missing_switch.json()) == (
        404,
        {"detail": "Message 99 not found in this chat."},
    )
    assert ChatMessage.objects.filter(session=alice.session).count() == 2
    assert TurnUsage.objects.filter(session=alice.session).count() == 1


def test_after_a_switch_a_websocket_send_continues_the_shown_branch(stack: str, fake_llm: Any) -> None:
    # given: Q A, edited into Q' A', then the first version shown again
    alice = person("alice")
    q, q_edited = "Q " + fake({"text": "A"}), "Q2 " + fake({"text": "A2"})
    _send(stack, alice, q)
    _version(stack, alice, 0, {"message": q_edited})
    switched = httpx.put(
        f"{stack}/api/chat/sessions/{alice.session.id}/branch", headers=alice.headers, json={"sequence": 0}, timeout=10
    )
    assert switched.status_code == 200
    follow = "Next " + fake({"text": "B"})

    async def scenario() -> list[dict[str, Any]]:
        async with WsClient(stack, alice.session.id, alice.headers) as ws:
            await ws.send({"type": "send", "message": follow})
            return await ws.until_finish()

    # when
    chunks = asyncio.run(scenario())
    wait_until(lambda: _idle(alice))
    # then: the model saw the shown branch, and the new rows follow it
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "B"
    assert _model_saw(fake_llm) == [("user", q), ("assistant", "A"), ("user", follow)]
    assert _shown(_detail(stack, alice)) == [
        (0, None, "user", q, {"position": 1, "count": 2, "sequences": [0, 2]}),
        (1, 0, "assistant", "A", None),
        (4, 1, "user", follow, None),
        (5, 4, "assistant", "B", None),
    ]


def test_every_versions_turn_counts_against_the_limits(stack: str) -> None:
    # given: a daily limit of $0.10, and answers that cost $0.002 each
    from ratelimits.services import limit_override_set
    from tests.factories import UserFactory

    alice = person("alice")
    staff = UserFactory(username="staff", is_staff=True)
    limit_override_set(
        user=alice.user, daily_microdollars=100_000, weekly_microdollars=1_000_000, reason="test", actor=staff
    )

    def priced(text: str) -> str:
        return fake({"text": text, "usage": {"prompt_tokens": 10, "completion_tokens": 2, "cost": 0.002}})

    _send(stack, alice, "Q " + priced("A"))
    # when: an edit and a regenerate
    _version(stack, alice, 0, {"message": "Q2 " + priced("B")})
    _version(stack, alice, 3, {})
    # then: three turns metered, 2 % of the day each
    usage = httpx.get(f"{stack}/api/chat/usage", headers=alice.headers, timeout=10).json()
    assert (usage["daily"]["percent_used"], usage["weekly"]["percent_used"]) == (6.0, 0.6)
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("cost_microdollars", flat=True)) == [
        2000,
        2000,
        2000,
    ]
    shares = [m["usage"] for m in _detail(stack, alice)["messages"] if m["role"] == "assistant"]
    assert shares == [{"charged": True, "outcome": "completed", "daily_percent": 2.0, "weekly_percent": 0.2}]


def test_an_edit_keeps_the_files_of_the_message_it_edits(stack: str, fake_llm: Any) -> None:
    # given: a message that carried a file
    alice = person("alice")
    uploaded = httpx.post(
        f"{stack}/api/chat/files", headers=alice.headers, files={"file": ("notes.txt", b"notes\n")}, timeout=60
    )
    assert uploaded.status_code == 201
    file_id = uploaded.json()["id"]
    result = read_sse(
        "POST", f"{stack}/api/chat/sessions/{alice.session.id}/stream", headers=alice.headers,
        json_body={"message": "Read this " + fake({"text": "Read."}), "file_ids": [file_id]},
    )  # fmt: skip
    assert result.status == 200
    wait_until(lambda: _idle(alice))
    # when: the user edits its text
    edited = _version(stack, alice, 0, {"message": "Read this twice " + fake({"text": "Read twice."})})
    # then: the new version carries the same file, and the model is told of it
    assert edited.text() == "Read twice."
    rows = ChatMessage.objects.filter(session=alice.session, role="user").order_by("sequence")
    assert [(r.content.split(" <<")[0], r.file_ids) for r in rows] == [
        ("Read this", [file_id]),
        ("Read this twice", [file_id]),
    ]
    last_user = [m for m in fake_llm.requests[-1]["body"]["messages"] if m["role"] == "user"][-1]
    assert f"file_id={file_id}" in str(last_user["content"])
