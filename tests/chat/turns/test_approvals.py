"""Tools that ask first, end to end: the real daphne and Celery worker (with approvals on,
`approval_stack.py`), the scripted LLM, SSE and WebSocket clients, and the real `ai` package."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing.models import CreditTransaction
from billing.selectors import credit_balance
from billing.services import credits_grant
from chat.engine.titles import TITLE_SYSTEM_PROMPT
from chat.models import ChatMessage, ToolApproval, TurnUsage
from chat.services.approvals import approval_threshold_set
from chat.turns.registry import turn_meta_get
from tests.chat.turns.approval_stack import (
    APPROVAL_TIMEOUT_S,
    CLOCK_COST_CENTS,
    approval_stack,
    approval_worker_settled,
)
from tests.chat.turns.helpers import Person, SseResult, WsClient, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JS_DIR = Path(__file__).resolve().parents[2] / "js"
CALC = {"name": "calculator", "arguments": {"expression": "6*7"}, "id": "call_calc_1"}
CLOCK = {"name": "get_current_time", "arguments": {}, "id": "call_clock_1"}


@pytest.fixture(scope="module")
def approvals_site(live_env: dict[str, str]) -> Iterator[str]:
    with approval_stack(live_env, name="approvals") as base_url:
        yield base_url


@pytest.fixture
def site(approvals_site: str, fake_llm: Any) -> Iterator[str]:
    fake_llm.reset()
    yield approvals_site
    approval_worker_settled()


def _start(site: str, p: Person, message: str) -> tuple[SseResult, threading.Thread]:
    """POST the message as an SSE client on another thread; the result fills as chunks arrive."""
    result = SseResult(0, {})
    reader = threading.Thread(
        target=read_sse,
        args=("POST", f"{site}/api/chat/sessions/{p.session.id}/stream"),
        kwargs={"headers": p.headers, "json_body": {"message": message}, "into": result},
        daemon=True,
    )
    reader.start()
    return result, reader


def _approval_chunk(result: SseResult) -> dict[str, Any]:
    return wait_until(lambda: next((c for _, c in result.events if c["type"] == "tool-approval-request"), None))


def _decide(site: str, p: Person, approval_id: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{site}/api/chat/sessions/{p.session.id}/approvals/{approval_id}", headers=p.headers, json=body, timeout=10
    )


def _idle(p: Person) -> bool:
    meta = turn_meta_get(p.session.id)
    return meta is None or not meta.is_running


def _tool_chunks(result: SseResult) -> list[dict[str, Any]]:
    return [c for _, c in result.events if c["type"].startswith("tool-")]


def _turn_requests(fake_llm: Any) -> list[dict[str, Any]]:
    """The model calls of turns (a new chat's title request is not one)."""
    return [
        r["body"]
        for r in fake_llm.requests
        if r["path"].endswith("/chat/completions")
        and not any(m.get("content") == TITLE_SYSTEM_PROMPT for m in r["body"]["messages"])
    ]


def _tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def _node(script: str, payload: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the AI SDK checks need node 20+")
    if not (JS_DIR / "node_modules" / "ai").is_dir():
        pytest.skip("tests/js/node_modules is missing: run `make js-tests` (npm ci) to install the ai package")
    done = subprocess.run(
        [node, str(JS_DIR / script)], input=json.dumps(payload), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _ui_messages(site: str, p: Person) -> list[dict[str, Any]]:
    response = httpx.get(f"{site}/api/chat/sessions/{p.session.id}/ui-messages", headers=p.headers, timeout=10)
    assert response.status_code == 200
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def test_approve_runs_the_tool_and_the_session_lists_the_wait(site: str, fake_llm: Any) -> None:
    # given: a turn whose calculator call asks first
    alice = person("alice")
    result, reader = _start(site, alice, "sum " + fake({"tool_calls": [CALC]}, {"text": "It is 42."}))
    chunk = _approval_chunk(result)
    approval = ToolApproval.objects.get()
    # then: the turn waits, and the session says so (for any device that opens it)
    assert chunk == {"type": "tool-approval-request", "approvalId": str(approval.pk), "toolCallId": "call_calc_1"}
    detail = httpx.get(f"{site}/api/chat/sessions/{alice.session.id}", headers=alice.headers, timeout=10).json()
    assert detail["active_turn"]["turn_id"] == str(approval.turn_id)
    [pending] = detail["pending_approvals"]
    assert {k: pending[k] for k in ("id", "tool_call_id", "tool_name", "input", "reason", "cost_cents", "status")} == {
        "id": str(approval.pk),
        "tool_call_id": "call_calc_1",
        "tool_name": "calculator",
        "input": {"expression": "6*7"},
        "reason": "listed",
        "cost_cents": 0,
        "status": "pending",
    }
    assert _tool_messages(_turn_requests(fake_llm)[-1]) == []  # nothing ran yet
    assert not ChatMessage.objects.filter(session=alice.session, role="tool").exists()
    # when
    decided = _decide(site, alice, str(approval.pk), {"approved": True})
    reader.join(timeout=30)
    # then: the tool ran, its output streamed, the turn answered
    assert decided.status_code == 200
    assert decided.json()["status"] == "approved"
    assert [c["type"] for c in _tool_chunks(result)] == [
        "tool-input-start",
        "tool-input-available",
        "tool-approval-request",
        "tool-output-available",
    ]
    assert _tool_chunks(result)[-1]["output"] == {"expression": "6*7", "result": 42}
    assert result.text() == "It is 42."
    assert result.types[-1] == "finish"
    tool_row = ChatMessage.objects.get(session=alice.session, role="tool")
    assert json.loads(tool_row.content or "") == {"expression": "6*7", "result": 42}
    assert _tool_messages(_turn_requests(fake_llm)[-1])[0]["content"] == tool_row.content
    # and a second decision, or one for another user, is refused
    again = _decide(site, alice, str(approval.pk), {"approved": False})
    assert again.status_code == 409
    assert again.json()["detail"] == "This tool call was already approved."
    bob = person("bob")
    foreign = httpx.post(
        f"{site}/api/chat/sessions/{alice.session.id}/approvals/{approval.pk}",
        headers=bob.headers,
        json={"approved": False},
        timeout=10,
    )
    assert foreign.status_code == 404
    assert ToolApproval.objects.get().status == "approved"
    detail = httpx.get(f"{site}/api/chat/sessions/{alice.session.id}", headers=alice.headers, timeout=10).json()
    assert detail["pending_approvals"] == [] and detail["active_turn"] is None


def test_deny_tells_the_model_and_the_ai_package_accepts_the_chunks(site: str, fake_llm: Any) -> None:
    # given
    alice = person("alice")
    result, reader = _start(site, alice, "sum " + fake({"tool_calls": [CALC]}, {"text": "Understood."}))
    approval_id = _approval_chunk(result)["approvalId"]
    # when
    decided = _decide(site, alice, approval_id, {"approved": False, "reason": "not with my money"})
    reader.join(timeout=30)
    # then: the denial is streamed as the AI SDK's own chunk, the model reads why
    assert decided.status_code == 200 and decided.json()["status"] == "denied"
    assert decided.json()["decision_reason"] == "not with my money"
    assert _tool_chunks(result)[-1] == {"type": "tool-output-denied", "toolCallId": "call_calc_1"}
    denial = "The user denied running tool 'calculator'; it was not run. Their reason: not with my money"
    requests = _turn_requests(fake_llm)
    assert len(requests) == 2
    assert _tool_messages(requests[1]) == [{"role": "tool", "tool_call_id": "call_calc_1", "content": denial}]
    assert result.text() == "Understood."
    assert ChatMessage.objects.get(session=alice.session, role="tool").content == denial
    # and the real `ai` package folds the stream and validates the saved transcript
    messages = _ui_messages(site, alice)
    [tool_part] = [p for p in messages[-1]["parts"] if p["type"] == "tool-calculator"]
    assert tool_part == {
        "type": "tool-calculator",
        "toolCallId": "call_calc_1",
        "state": "output-denied",
        "input": {"expression": "6*7"},
        "approval": {"id": approval_id, "approved": False, "reason": "not with my money"},
    }
    checked = _node("approval_chunks_check.mjs", {"chunks": [c for _, c in result.events], "messages": messages})
    assert checked["valid"] is True
    assert checked["states"] == ["input-streaming", "input-available", "approval-requested", "output-denied"]
    [streamed] = [p for p in checked["message"]["parts"] if p["type"] == "tool-calculator"]
    assert streamed["state"] == "output-denied"
    assert streamed["approval"] == {"id": approval_id}


def test_the_ai_package_accepts_an_approved_call_and_its_transcript(site: str, fake_llm: Any) -> None:
    # given
    alice = person("alice")
    result, reader = _start(site, alice, "sum " + fake({"tool_calls": [CALC]}, {"text": "42."}))
    approval_id = _approval_chunk(result)["approvalId"]
    # when
    assert _decide(site, alice, approval_id, {"approved": True}).status_code == 200
    reader.join(timeout=30)
    # then
    messages = _ui_messages(site, alice)
    checked = _node("approval_chunks_check.mjs", {"chunks": [c for _, c in result.events], "messages": messages})
    assert checked["valid"] is True
    assert checked["states"] == ["input-streaming", "input-available", "approval-requested", "output-available"]
    [saved] = [p for p in messages[-1]["parts"] if p["type"] == "tool-calculator"]
    assert saved["state"] == "output-available"
    assert saved["approval"] == {"id": approval_id, "approved": True}


def test_each_call_of_a_round_asks_on_its_own(site: str, fake_llm: Any) -> None:
    # given: one round with two calls that ask first
    alice = person("alice")
    second_call = {"name": "calculator", "arguments": {"expression": "2+2"}, "id": "call_calc_2"}
    result, reader = _start(site, alice, "two " + fake({"tool_calls": [CALC, second_call]}, {"text": "One of two."}))
    first_id = _approval_chunk(result)["approvalId"]
    # when: the first is denied; then the second asks, and is approved
    assert _decide(site, alice, first_id, {"approved": False}).status_code == 200
    second_id = wait_until(
        lambda: next(
            (
                c["approvalId"]
                for _, c in result.events
                if c["type"] == "tool-approval-request" and c["approvalId"] != first_id
            ),
            None,
        )
    )
    assert _decide(site, alice, second_id, {"approved": True}).status_code == 200
    reader.join(timeout=30)
    # then: in order, each with its own outcome, and the model reads both results
    assert [(c["type"], c["toolCallId"]) for c in _tool_chunks(result)] == [
        ("tool-input-start", "call_calc_1"),
        ("tool-input-available", "call_calc_1"),
        ("tool-approval-request", "call_calc_1"),
        ("tool-output-denied", "call_calc_1"),
        ("tool-input-start", "call_calc_2"),
        ("tool-input-available", "call_calc_2"),
        ("tool-approval-request", "call_calc_2"),
        ("tool-output-available", "call_calc_2"),
    ]
    assert _tool_messages(_turn_requests(fake_llm)[-1]) == [
        {
            "role": "tool",
            "tool_call_id": "call_calc_1",
            "content": "The user denied running tool 'calculator'; it was not run.",
        },
        {"role": "tool", "tool_call_id": "call_calc_2", "content": '{"expression": "2+2", "result": 4}'},
    ]
    assert list(ToolApproval.objects.order_by("created_at").values_list("status", flat=True)) == ["denied", "approved"]


def test_no_answer_within_the_timeout_counts_as_a_denial(site: str, fake_llm: Any) -> None:
    # given
    alice = person("alice")
    result, reader = _start(site, alice, "sum " + fake({"tool_calls": [CALC]}, {"text": "No answer, fine."}))
    asked_at = time.monotonic()
    approval_id = _approval_chunk(result)["approvalId"]
    # when: nobody answers
    reader.join(timeout=APPROVAL_TIMEOUT_S + 30)
    waited = time.monotonic() - asked_at
    # then
    assert APPROVAL_TIMEOUT_S - 0.5 <= waited < APPROVAL_TIMEOUT_S + 5
    assert _tool_chunks(result)[-1] == {"type": "tool-output-denied", "toolCallId": "call_calc_1"}
    told = (
        f"The user did not answer the request to run tool 'calculator' within {APPROVAL_TIMEOUT_S} seconds, "
        "so it was not run. Treat it as denied."
    )
    assert _tool_messages(_turn_requests(fake_llm)[-1]) == [
        {"role": "tool", "tool_call_id": "call_calc_1", "content": told}
    ]
    assert ToolApproval.objects.get().status == "expired"
    late = _decide(site, alice, approval_id, {"approved": True})
    assert late.status_code == 409
    assert late.json()["detail"] == "This tool call is no longer waiting: nobody answered in time, so it was denied."
    # the wait outlived the stream idle timeout (2 s) and the turn still ended normally
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == ["completed"]
    assert result.text() == "No answer, fine."


def test_a_waiting_turn_blocks_no_other_turn_of_the_worker(site: str) -> None:
    # given: one chat's turn waits for its approval
    alice = person("alice")
    waiting, waiting_reader = _start(site, alice, "sum " + fake({"tool_calls": [CALC]}, {"text": "42."}))
    approval_id = _approval_chunk(waiting)["approvalId"]
    # when: another chat of the same worker runs a whole turn meanwhile
    bob = person("bob")
    other = read_sse(
        "POST",
        f"{site}/api/chat/sessions/{bob.session.id}/stream",
        headers=bob.headers,
        json_body={"message": "hi " + fake({"text": "Hello, Bob.", "chunk_size": 3, "delay_ms": 20})},
        timeout=APPROVAL_TIMEOUT_S,
    )
    # then: it streamed to its end while the first one still waits
    assert other.text() == "Hello, Bob." and other.types[-1] == "finish"
    assert ToolApproval.objects.get(pk=approval_id).status == "pending"
    assert _decide(site, alice, approval_id, {"approved": True}).status_code == 200
    waiting_reader.join(timeout=30)
    assert waiting.text() == "42."


def test_a_stop_during_the_wait_ends_the_turn_at_once(site: str, fake_llm: Any) -> None:
    # given: a turn waiting for an approval
    alice = person("alice")
    result, reader = _start(site, alice, "sum " + fake({"tool_calls": [CALC]}, {"text": "never sent"}))
    approval_id = _approval_chunk(result)["approvalId"]
    # when
    stopped_at = time.monotonic()
    cancel = httpx.post(f"{site}/api/chat/sessions/{alice.session.id}/cancel", headers=alice.headers, timeout=10)
    reader.join(timeout=30)
    ended = time.monotonic() - stopped_at
    # then: well before the timeout; the call did not run, the model was not asked again
    assert cancel.json() == {"cancelled": True, "reason": None}
    assert ended < APPROVAL_TIMEOUT_S - 1  # a stop lands within the supervisor's 0.5 s poll, not at the deadline
    assert _tool_chunks(result)[-1] == {"type": "tool-output-denied", "toolCallId": "call_calc_1"}
    assert result.types[-1] == "finish"
    assert len(_turn_requests(fake_llm)) == 1
    wait_until(lambda: _idle(alice))
    assert ToolApproval.objects.get().status == "cancelled"
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == ["cancelled"]
    rows = [(m.role, m.kind) for m in ChatMessage.objects.filter(session=alice.session).order_by("sequence")]
    assert rows == [("user", "message"), ("assistant", "message"), ("tool", "message"), ("assistant", "stopped")]
    assert _decide(site, alice, approval_id, {"approved": True}).status_code == 409


def test_approval_from_a_second_socket_reaches_the_turn_streaming_to_another_client(site: str, fake_llm: Any) -> None:
    # given: the turn streams over SSE to one client
    alice = person("alice")
    result, reader = _start(site, alice, "sum " + fake({"tool_calls": [CALC]}, {"text": "Done: 42."}))
    approval_id = _approval_chunk(result)["approvalId"]

    async def approve_over_websocket() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        async with WsClient(site, alice.session.id, alice.headers) as socket:
            # the second device resumes the turn and sees the same request
            await socket.send({"type": "resume"})
            await socket.until(lambda f: f.get("chunk", {}).get("type") == "tool-approval-request")
            await socket.send({"type": "approval", "approval_id": approval_id, "approved": True})
            decided = await socket.until(lambda f: f.get("type") == "approval_decided")
            await socket.send({"type": "approval", "approval_id": approval_id, "approved": False})
            refused = await socket.until(lambda f: f.get("type") == "error")
            chunks = await socket.until_finish()
            return decided, refused, chunks

    # when
    decided, refused, socket_chunks = asyncio.run(approve_over_websocket())
    reader.join(timeout=30)
    # then: both clients see the tool's output and the answer
    assert decided == {"type": "approval_decided", "approval_id": approval_id, "status": "approved"}
    assert refused == {"type": "error", "code": "approval_decided", "message": "This tool call was already approved."}
    assert _tool_chunks(result)[-1]["type"] == "tool-output-available"
    assert result.text() == "Done: 42."
    assert [c for c in socket_chunks if c["type"] == "tool-approval-request"] == [
        {"type": "tool-approval-request", "approvalId": approval_id, "toolCallId": "call_calc_1"}
    ]
    assert "tool-output-available" in [c["type"] for c in socket_chunks]


def test_a_bad_decision_frame_or_body_is_refused_clearly(site: str) -> None:
    alice = person("alice")
    url = f"{site}/api/chat/sessions/{alice.session.id}/approvals/00000000-0000-0000-0000-000000000000"
    missing = httpx.post(url, headers=alice.headers, json={"approved": True}, timeout=10)
    assert missing.status_code == 404
    bad = httpx.post(url, headers=alice.headers, json={"approved": "maybe"}, timeout=10)
    assert (bad.status_code, bad.json()) == (400, {"approved": ["Must be a valid boolean."]})
    extra = httpx.post(url, headers=alice.headers, json={"approved": True, "extra": 1}, timeout=10)
    assert extra.status_code == 400
    assert list(extra.json()) == ["extra"]

    async def frames() -> list[dict[str, Any]]:
        async with WsClient(site, alice.session.id, alice.headers) as socket:
            await socket.send({"type": "approval", "approval_id": "nope", "approved": "yes"})
            first = await socket.recv()
            await socket.send({"type": "approval", "approval_id": "nope", "approved": True})
            second = await socket.recv()
            return [first, second]

    first, second = asyncio.run(frames())
    assert first == {"type": "error", "code": "invalid_frame", "message": "Field approved must be true or false."}
    assert second == {"type": "error", "code": "not_found", "message": "Approval nope not found."}


def test_nothing_is_charged_for_a_denied_priced_tool(site: str, fake_llm: Any) -> None:
    # given: a priced tool (3 cents) over the user's threshold (1 cent), and 100 credits
    alice = person("alice")
    credits_grant(user=alice.user, amount_cents=100, idempotency_key="grant:alice", reason="test")
    approval_threshold_set(user=alice.user, threshold_cents=1)
    ledger_before = list(CreditTransaction.objects.filter(user=alice.user).values_list("pk", flat=True))
    result, reader = _start(site, alice, "time " + fake({"tool_calls": [CLOCK]}, {"text": "Okay."}))
    approval_id = _approval_chunk(result)["approvalId"]
    approval = ToolApproval.objects.get(pk=approval_id)
    assert (approval.reason, approval.cost_cents) == ("cost_over_threshold", CLOCK_COST_CENTS)
    # when
    assert _decide(site, alice, approval_id, {"approved": False}).status_code == 200
    reader.join(timeout=30)
    wait_until(lambda: _idle(alice))
    # then: balance and ledger as before
    assert _tool_chunks(result)[-1] == {"type": "tool-output-denied", "toolCallId": "call_clock_1"}
    assert credit_balance(user=alice.user) == 100
    assert list(CreditTransaction.objects.filter(user=alice.user).values_list("pk", flat=True)) == ledger_before
    # and, the control: an approved run of the same tool is charged once
    second = "time again " + fake({"tool_calls": [{**CLOCK, "id": "call_clock_2"}]}, {"text": "Okay."})
    result, reader = _start(site, alice, second)
    approval_id = _approval_chunk(result)["approvalId"]
    assert _decide(site, alice, approval_id, {"approved": True}).status_code == 200
    reader.join(timeout=30)
    wait_until(lambda: credit_balance(user=alice.user) == 100 - CLOCK_COST_CENTS)
    spends = CreditTransaction.objects.filter(user=alice.user, kind="USAGE")
    assert list(spends.values_list("amount_cents", flat=True)) == [-CLOCK_COST_CENTS]


def test_without_a_threshold_or_a_listing_a_tool_never_asks(site: str, fake_llm: Any) -> None:
    # given: a priced tool, credits, no threshold (what every stock client of this server sees)
    alice = person("alice")
    credits_grant(user=alice.user, amount_cents=100, idempotency_key="grant:alice", reason="test")
    # when
    result = read_sse(
        "POST",
        f"{site}/api/chat/sessions/{alice.session.id}/stream",
        headers=alice.headers,
        json_body={"message": "time " + fake({"tool_calls": [CLOCK]}, {"text": "Now."})},
    )
    # then
    assert [c["type"] for c in _tool_chunks(result)] == [
        "tool-input-start",
        "tool-input-available",
        "tool-output-available",
    ]
    assert not ToolApproval.objects.exists()
    wait_until(lambda: credit_balance(user=alice.user) == 100 - CLOCK_COST_CENTS)
