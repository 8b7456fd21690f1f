"""The transcript as AI SDK UIMessages (`GET …/ui-messages`) and notice rows without markers.

The end-to-end tests run real turns (daphne, a Celery worker, the scripted LLM) and
check the body with the AI SDK's own ``validateUIMessages`` (tests/js, `make js-tests`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.apps import apps

from chat.models import ChatMessage, ChatSession
from chat.selectors import ui_message_page
from tests.chat.turns.helpers import Person, SseResult, fake, person, read_sse, wait_until
from tests.factories import UserFactory, link_rows

JS_DIR = Path(__file__).resolve().parents[1] / "js"
MARKER = "__COPILOT_SYSTEM__"
CALC = {"name": "calculator", "arguments": {"expression": "2+3"}, "id": "call_calc"}


def _validator(messages: Any) -> subprocess.CompletedProcess[str]:
    """Run the `ai` package's validateUIMessages on ``messages`` (skips without node or the package)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the AI SDK validation test needs node 20+")
    if not (JS_DIR / "node_modules" / "ai").is_dir():
        pytest.skip("tests/js/node_modules is missing: run `make js-tests` (npm ci) to install the ai package")
    done = subprocess.run(
        [node, str(JS_DIR / "validate_ui_messages.mjs")],
        input=json.dumps(messages),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done


def _resume(messages: list[dict[str, Any]], chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The messages a `useChat` given ``messages`` shows once the resumed stream's ``chunks`` ran."""
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "ai").is_dir():
        pytest.skip("node or tests/js/node_modules is missing: run `make js-tests` (npm ci)")
    done = subprocess.run(
        [node, str(JS_DIR / "resume_ui_messages.mjs")],
        input=json.dumps({"messages": messages, "chunks": chunks}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def validate_ui_messages(messages: list[dict[str, Any]]) -> None:
    done = _validator(messages)
    assert (done.returncode, done.stderr) == (0, "")


def test_the_validator_is_the_ai_packages_own_and_rejects_what_is_not_a_ui_message() -> None:
    done = _validator([{"id": "m1", "role": "bot", "parts": [{"type": "text", "text": "hi"}]}])
    assert done.returncode == 1
    assert "Type validation failed" in done.stderr
    assert "role" in done.stderr


@pytest.fixture
def stack(daphne_server: str, celery_worker: Any, fake_llm: Any) -> str:
    fake_llm.reset()
    return daphne_server


def _url(base: str, p: Person, tail: str = "") -> str:
    return f"{base}/api/chat/sessions/{p.session.id}{tail}"


def _idle(base: str, p: Person) -> bool:
    return httpx.get(_url(base, p), headers=p.headers, timeout=10).json()["active_turn"] is None


def _ui(base: str, p: Person, **params: Any) -> dict[str, Any]:
    response = httpx.get(_url(base, p, "/ui-messages"), headers=p.headers, params=params, timeout=10)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _start_id(result: SseResult) -> str:
    starts = [chunk for _, chunk in result.events if chunk["type"] == "start"]
    assert len(starts) == 1
    return str(starts[0]["messageId"])


# ---------------------------------------------------------------- end to end


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_stopped_turn_has_a_stopped_row_and_no_marker_in_any_payload(stack: str) -> None:
    # given: a slow answer, stopped after two deltas
    alice = person("alice")
    slow = fake({"text": "a" * 200, "chunk_size": 2, "delay_ms": 50})
    first = read_sse(
        "POST", _url(stack, alice, "/stream"), headers=alice.headers, json_body={"message": slow},
        stop_when=lambda r: r.types.count("text-delta") == 2,
    )  # fmt: skip
    # when
    cancel = httpx.post(_url(stack, alice, "/cancel"), headers=alice.headers, timeout=10)
    wait_until(lambda: _idle(stack, alice))
    # then: the row is structured, and neither transcript carries the marker
    assert cancel.json() == {"cancelled": True, "reason": None}
    detail = httpx.get(_url(stack, alice), headers=alice.headers, timeout=10)
    ui = _ui(stack, alice)
    assert MARKER not in detail.text
    assert MARKER not in json.dumps(ui)
    rows = detail.json()["messages"]
    assert [(m["role"], m["kind"]) for m in rows] == [
        ("user", "message"),
        ("assistant", "message"),
        ("assistant", "stopped"),
    ]
    assert rows[2]["content"] == "Stopped"
    assert ChatMessage.objects.filter(session=alice.session, kind=ChatMessage.Kind.STOPPED).count() == 1
    turn_id = _start_id(first)
    assistant = ui["messages"][1]
    assert [m["role"] for m in ui["messages"]] == ["user", "assistant"]
    assert assistant["id"] == turn_id
    assert [p["type"] for p in assistant["parts"]] == ["step-start", "text", "data-stopped"]
    assert assistant["parts"][2] == {"type": "data-stopped", "data": {"text": "Stopped"}}
    assert assistant["metadata"]["stopped"] is True
    validate_ui_messages(ui["messages"])


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_turn_with_reasoning_a_tool_and_text_is_one_valid_ui_message(stack: str) -> None:
    # given
    alice = person("alice")
    message = "add " + fake({"reasoning": "Let me add", "tool_calls": [CALC]}, {"text": "It is 5."})
    # when
    streamed = read_sse("POST", _url(stack, alice, "/stream"), headers=alice.headers, json_body={"message": message})
    wait_until(lambda: _idle(stack, alice))
    body = _ui(stack, alice)
    # then
    assert streamed.done is True
    messages = body["messages"]
    user_row = ChatMessage.objects.get(session=alice.session, role="user")
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["id"] == f"user-{user_row.sequence}"
    assert messages[0]["parts"] == [{"type": "text", "text": message}]
    assistant = messages[1]
    assert assistant["id"] == _start_id(streamed)
    assert assistant["id"] == str(user_row.turn_id)
    streamed_output = next(c["output"] for _, c in streamed.events if c["type"] == "tool-output-available")
    assert assistant["parts"] == [
        {"type": "step-start"},
        {"type": "reasoning", "text": "Let me add", "state": "done"},
        {
            "type": "tool-calculator",
            "toolCallId": "call_calc",
            "state": "output-available",
            "input": {"expression": "2+3"},
            "output": streamed_output,
        },
        {"type": "step-start"},
        {"type": "text", "text": "It is 5.", "state": "done"},
    ]
    assert "stopped" not in assistant["metadata"]
    assert assistant["metadata"]["turnId"] == assistant["id"]
    assert (body["has_more"], body["oldest_sequence"], body["active_turn"]) == (False, 0, None)
    assert body["session"]["id"] == str(alice.session.id)
    validate_ui_messages(messages)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_transcript_read_mid_turn_and_a_resume_never_repeat_a_message_id(stack: str, slow_http: str) -> None:
    # given: a turn whose tool round is persisted and whose tool (3 s) still runs
    alice = person("alice")
    web = {"name": "web_fetch", "arguments": {"url": slow_http}, "id": "call_web"}
    script = "fetch " + fake({"tool_calls": [web]}, {"text": "fetched"})
    live = SseResult(0, {})
    reader = threading.Thread(
        target=read_sse,
        args=("POST", _url(stack, alice, "/stream")),
        kwargs={"headers": alice.headers, "json_body": {"message": script}, "into": live},
    )
    reader.start()
    wait_until(lambda: "tool-input-available" in live.types)
    wait_until(
        lambda: ChatMessage.objects.filter(session=alice.session, role="assistant").exclude(tool_calls=[]).exists()
    )
    # when: a client reloads mid-turn, then resumes the stream
    mid = _ui(stack, alice)
    resumed = read_sse("GET", _url(stack, alice, "/stream"), headers=alice.headers)
    reader.join(30)
    wait_until(lambda: _idle(stack, alice))
    after = _ui(stack, alice)
    # then: the running turn's message comes only from the stream, under the start chunk's id
    turn_id = _start_id(live)
    assert mid["active_turn"]["turn_id"] == turn_id
    assert [m["role"] for m in mid["messages"]] == ["user"]
    assert _start_id(resumed) == turn_id
    shown = [m["id"] for m in mid["messages"]] + [turn_id]
    assert len(shown) == len(set(shown))
    validate_ui_messages(mid["messages"])
    # and after the turn: one assistant message with that id, holding the tool and the answer
    assert [m["id"] for m in after["messages"]] == [mid["messages"][0]["id"], turn_id]
    assert [p["type"] for p in after["messages"][1]["parts"]] == ["step-start", "tool-web_fetch", "step-start", "text"]
    assert after["messages"][1]["parts"][1]["state"] == "output-available"
    validate_ui_messages(after["messages"])
    # and what the AI SDK itself makes of transcript + resumed stream: each message once,
    # the same parts as the transcript read after the turn (the stream adds its usage part)
    shown_by = _resume(mid["messages"], [chunk for _, chunk in resumed.events])
    for version in ("ai5", "ai6"):
        assert [m["id"] for m in shown_by[version]] == [m["id"] for m in after["messages"]]
        live_parts = [p for p in shown_by[version][1]["parts"] if p["type"] != "data-usage"]
        assert [p["type"] for p in live_parts] == [p["type"] for p in after["messages"][1]["parts"]]
        assert live_parts[1]["output"] == after["messages"][1]["parts"][1]["output"]
        assert live_parts[3]["text"] == after["messages"][1]["parts"][3]["text"] == "fetched"


# ---------------------------------------------------------------- paging and old rows


def _turn_rows(session: ChatSession, start: int, turn: str, question: str) -> None:
    call = {
        "id": f"c{start}",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "1"}'},
    }
    rows = [
        ChatMessage(role="user", content=question),
        ChatMessage(role="reasoning", content="thinking"),
        ChatMessage(role="assistant", content="", tool_calls=[call]),
        ChatMessage(role="tool", content='{"result": 1}', tool_call_id=f"c{start}", name="calculator"),
        ChatMessage(role="user", content="and faster"),  # a follow-up drained between rounds
        ChatMessage(role="assistant", content="One."),
    ]
    for offset, row in enumerate(rows):
        row.session, row.sequence, row.turn_id = session, start + offset, turn
        row.save()
    link_rows(session)


@pytest.mark.django_db
def test_pages_are_widened_to_whole_turns_and_follow_ups_fold_into_the_turn() -> None:
    # given: two turns of six rows each
    session = ChatSession.objects.create(user=UserFactory(username="bob"))
    first, second = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    _turn_rows(session, 0, first, "q1")
    _turn_rows(session, 6, second, "q2")
    # when: a page of two rows
    newest = ui_message_page(session=session, limit=2)
    older = ui_message_page(session=session, limit=2, before_sequence=newest.oldest_sequence)
    # then: the page holds the whole second turn; the next one the whole first turn
    assert (newest.has_more, newest.oldest_sequence) == (True, 6)
    assert [m["id"] for m in newest.messages] == ["user-6", second]
    assert (older.has_more, older.oldest_sequence) == (False, 0)
    assert [m["id"] for m in older.messages] == ["user-0", first]
    assert newest.messages[1]["parts"] == [
        {"type": "step-start"},
        {"type": "reasoning", "text": "thinking", "state": "done"},
        {
            "type": "tool-calculator",
            "toolCallId": "c6",
            "state": "output-available",
            "input": {"expression": "1"},
            "output": {"result": 1},
        },
        {"type": "data-pending-drained", "data": {"count": 1, "messages": ["and faster"]}},
        {"type": "step-start"},
        {"type": "text", "text": "One.", "state": "done"},
    ]
    validate_ui_messages(older.messages + newest.messages)


@pytest.mark.django_db
def test_an_unanswered_tool_call_is_an_output_error_and_notices_are_data_parts() -> None:
    # given: a turn that failed after a tool call nobody answered
    session = ChatSession.objects.create(user=UserFactory(username="carol"))
    turn = "33333333-3333-3333-3333-333333333333"
    call = {"id": "c1", "type": "function", "function": {"name": "web_fetch", "arguments": '{"url": "x"}'}}
    for sequence, row in enumerate(
        [
            ChatMessage(role="user", content="go"),
            ChatMessage(role="assistant", content="Fetching", tool_calls=[call]),
            ChatMessage(role="assistant", content="The provider failed.", kind=ChatMessage.Kind.ERROR_NOTICE),
        ]
    ):
        row.session, row.sequence, row.turn_id = session, sequence, turn
        row.save()
    link_rows(session)
    # when
    page = ui_message_page(session=session, limit=50)
    # then
    assert page.messages[1]["parts"] == [
        {"type": "step-start"},
        {"type": "text", "text": "Fetching", "state": "done"},
        {
            "type": "tool-web_fetch",
            "toolCallId": "c1",
            "state": "output-error",
            "input": {"url": "x"},
            "errorText": "The tool did not finish.",
        },
        {"type": "data-notice", "data": {"kind": "error", "text": "The provider failed."}},
    ]
    assert page.messages[1]["metadata"]["error"] is True
    validate_ui_messages(page.messages)


@pytest.mark.django_db
def test_the_migration_turns_old_marker_rows_into_kinds_without_the_marker() -> None:
    # given: rows as they were stored before the kind field
    from importlib import import_module

    migration = import_module("chat.migrations.0003_chatmessage_kind_notices")
    session = ChatSession.objects.create(user=UserFactory(username="dave"))
    contents = ["hello", "[__COPILOT_SYSTEM__] Execution stopped by user", "[__COPILOT_SYSTEM__] Error: boom"]
    for sequence, content in enumerate(contents):
        ChatMessage.objects.create(session=session, sequence=sequence, role="assistant", content=content)
    # when
    migration.notices_to_kind(apps, None)
    # then
    rows = list(ChatMessage.objects.filter(session=session).order_by("sequence").values_list("kind", "content"))
    assert rows == [("message", "hello"), ("stopped", "Stopped"), ("error_notice", "boom")]


@pytest.mark.django_db
def test_the_tree_migration_links_existing_rows_into_one_branch_ending_at_the_last() -> None:
    # given: rows as they were stored before the tree (no parent, no leaf)
    from importlib import import_module

    migration = import_module("chat.migrations.0009_message_tree")
    session = ChatSession.objects.create(user=UserFactory(username="erin"))
    empty = ChatSession.objects.create(user=UserFactory(username="frank"))
    for sequence, role in enumerate(["user", "reasoning", "assistant", "user", "assistant"]):
        ChatMessage.objects.create(session=session, sequence=sequence, role=role, content=f"m{sequence}")
    # when (twice: the backfill is re-runnable)
    migration.link_rows_linearly(apps, None)
    migration.link_rows_linearly(apps, None)
    # then
    rows = ChatMessage.objects.filter(session=session).order_by("sequence")
    assert list(rows.values_list("sequence", "parent_sequence")) == [(0, None), (1, 0), (2, 1), (3, 2), (4, 3)]
    session.refresh_from_db()
    empty.refresh_from_db()
    assert (session.leaf_sequence, empty.leaf_sequence) == (4, None)
    assert [m["role"] for m in ui_message_page(session=session, limit=50).messages] == ["user", "assistant"] * 2


@pytest.mark.django_db
def test_ui_messages_of_another_users_session_answer_404_and_anonymous_is_refused(
    alice: Any, charlie_client: Any
) -> None:
    # given
    from rest_framework.test import APIClient

    session = ChatSession.objects.create(user=alice, title="Private")
    ChatMessage.objects.create(session=session, sequence=0, role="user", content="secret")
    # when
    foreign = charlie_client.get(f"/api/chat/sessions/{session.id}/ui-messages")
    anonymous = APIClient().get(f"/api/chat/sessions/{session.id}/ui-messages")
    bad_limit = charlie_client.get(f"/api/chat/sessions/{session.id}/ui-messages?limit=0")
    # then
    assert (foreign.status_code, foreign.json()) == (404, {"detail": f"Session {session.id} not found."})
    assert anonymous.status_code == 401
    assert "secret" not in anonymous.content.decode()
    assert bad_limit.status_code == 400


@pytest.mark.django_db
def test_ui_messages_of_an_empty_session_is_an_empty_page(alice: Any, alice_client: Any) -> None:
    session = ChatSession.objects.create(user=alice)
    body = alice_client.get(f"/api/chat/sessions/{session.id}/ui-messages").json()
    assert {k: v for k, v in body.items() if k != "session"} == {
        "messages": [],
        "has_more": False,
        "oldest_sequence": None,
        "active_turn": None,
    }
