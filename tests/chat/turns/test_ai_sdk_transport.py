"""The AI SDK's own `DefaultChatTransport` with the options of static/copilot/ai-sdk.js, against
the real server (node drives the real `ai` package; tests/js/ai_sdk_transport_check.mjs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chat.models import ChatMessage, TurnUsage
from chat.turns.registry import turn_meta_get
from tests.chat.turns.helpers import Person, SseResult, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JS_DIR = Path(__file__).resolve().parents[2] / "js"


def _node(stack: str, p: Person, mode: str, **fields: Any) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the AI SDK transport tests need node 20+")
    if not (JS_DIR / "node_modules" / "ai").is_dir():
        pytest.skip("tests/js/node_modules is missing: run `make js-tests` (npm ci) to install the ai package")
    config = {"baseUrl": stack, "sessionId": str(p.session.id), "key": p.key, "mode": mode, **fields}
    done = subprocess.run(
        [node, str(JS_DIR / "ai_sdk_transport_check.mjs")],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _idle(p: Person) -> bool:
    meta = turn_meta_get(p.session.id)
    return meta is None or not meta.is_running


def _rows(p: Person) -> list[tuple[str, str, str]]:
    return [(m.role, m.kind, m.content) for m in ChatMessage.objects.filter(session=p.session).order_by("sequence")]


def test_a_message_sent_through_the_transport_streams_its_whole_answer(stack: str) -> None:
    # given
    alice = person("alice")
    text = "hello " + fake({"text": "Hello from the copilot.", "chunk_size": 4})
    # when
    result = _node(stack, alice, "send", text=text, messageId="msg-u1")
    # then
    assert result["text"] == "Hello from the copilot."
    assert result["types"][0] == "start" and result["types"][-1] == "finish"
    message = result["message"]
    assert message["role"] == "assistant"
    assert [p["text"] for p in message["parts"] if p["type"] == "text"] == ["Hello from the copilot."]
    assert result["cancelCount"] == 0  # a stream that ends on its own cancels nothing
    rows = _rows(alice)
    assert rows == [("user", "message", text), ("assistant", "message", "Hello from the copilot.")]
    user_row = ChatMessage.objects.get(session=alice.session, role="user")
    assert user_row.client_message_id == "msg-u1"  # the SDK message's id, as `client_message_id`
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == ["completed"]


def test_stop_ends_the_server_turn_within_five_seconds(stack: str) -> None:
    # given: a slow answer (200 deltas of 60 ms: 12 s when left to run)
    alice = person("alice")
    full = "b" * 400
    text = "slow " + fake({"text": full, "chunk_size": 2, "delay_ms": 60})
    # when: the SDK aborts after the first text delta
    result = _node(stack, alice, "stop", text=text, messageId="msg-stop")
    ended = wait_until(
        lambda: (
            time.time()
            if TurnUsage.objects.filter(session=alice.session).exclude(outcome="running").exists() and _idle(alice)
            else None
        ),
        timeout=10,
    )
    # then
    assert result["cancelCount"] == 1  # once, although the abort reaches the fetch and its body
    assert result["cancel"] == {"status": 200, "body": {"cancelled": True, "reason": None}}
    assert ended - result["abortedAt"] / 1000 < 5
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == ["cancelled"]
    rows = _rows(alice)
    assert rows[0] == ("user", "message", text)
    assert rows[1][:2] == ("assistant", "message")
    assert set(rows[1][2]) == {"b"}
    assert len(rows[1][2]) < len(full)  # the turn did not run to its end
    assert rows[2][:2] == ("assistant", "stopped")
    assert len(rows) == 3


def test_reconnect_replays_the_running_turn_and_none_when_idle(stack: str) -> None:
    # given: a slow turn streaming to another client
    alice = person("alice")
    # (6 s of streaming: the node client starts well within it, even on a loaded machine)
    full = "one two three four five six seven eight nine ten " * 6
    text = "go " + fake({"text": full, "chunk_size": 5, "delay_ms": 100})
    first = SseResult(0, {})
    reader = threading.Thread(
        target=read_sse,
        args=("POST", f"{stack}/api/chat/sessions/{alice.session.id}/stream"),
        kwargs={"headers": alice.headers, "json_body": {"message": text}, "into": first},
    )
    reader.start()
    wait_until(lambda: first.text() != "")
    # when: the transport's reconnectToStream (what `useChat({resume: true})` calls)
    resumed = _node(stack, alice, "reconnect")
    reader.join(timeout=60)
    after = _node(stack, alice, "reconnect")
    # then: the turn from its start, once, to its finish; nothing once it ended
    assert resumed["text"] == full == first.text()
    assert resumed["types"][0] == "start" and resumed["types"].count("finish") == 1
    start_ids = [c["messageId"] for c in resumed["chunks"] if c["type"] == "start"]
    first_ids = [c["messageId"] for _, c in first.events if c["type"] == "start"]
    assert start_ids == first_ids and len(start_ids) == 1
    assert resumed["cancelCount"] == 0
    assert after == {"none": True, "cancelCount": 0}
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == ["completed"]


def test_a_client_that_only_aborts_leaves_the_turn_running_to_its_end(stack: str) -> None:
    # given: the stock fetch (no cancel on abort), a slow answer
    alice = person("alice")
    full = "c" * 60
    text = "slow " + fake({"text": full, "chunk_size": 2, "delay_ms": 40})
    # when: aborted after the first text delta, as the stock `stop()` does (or a closed tab)
    result = _node(stack, alice, "stop", text=text, messageId="msg-abort", stock=True)
    wait_until(lambda: TurnUsage.objects.filter(session=alice.session).exclude(outcome="running").exists())
    # then: no cancel; the turn ran to its end and saved the whole answer
    assert (result["cancelCount"], result["cancel"]) == (0, None)
    assert len(result["text"]) < len(full)
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == ["completed"]
    assert _rows(alice) == [("user", "message", text), ("assistant", "message", full)]


def test_a_resume_the_sdk_replaces_with_a_newer_one_cancels_nothing(stack: str) -> None:
    # given: a slow turn streaming to another client
    alice = person("alice")
    full = "d" * 60
    text = "go " + fake({"text": full, "chunk_size": 3, "delay_ms": 40})
    first = SseResult(0, {})
    reader = threading.Thread(
        target=read_sse,
        args=("POST", f"{stack}/api/chat/sessions/{alice.session.id}/stream"),
        kwargs={"headers": alice.headers, "json_body": {"message": text}, "into": first},
    )
    reader.start()
    wait_until(lambda: first.text() != "")
    # when: a resume aborted by the one that replaces it
    resumed = _node(stack, alice, "replace-resume")
    reader.join(timeout=60)
    # then: the newer resume reads the turn to its end; the turn was not cancelled
    assert resumed["cancelCount"] == 0
    assert resumed["text"] == full == first.text()
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == ["completed"]
    assert _rows(alice) == [("user", "message", text), ("assistant", "message", full)]
