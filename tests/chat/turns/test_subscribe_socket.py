"""The user's subscribe socket (`/ws/chat/`) end to end:
daphne + a real Celery worker + Redis + the scripted LLM, real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
import websockets

from chat.models import ChatMessage, ChatSession, TurnUsage
from chat.turns.registry import turn_meta_get
from tests.chat.turns.helpers import Person, SseResult, WsClient, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _stream_url(base: str, session: ChatSession) -> str:
    return f"{base}/api/chat/sessions/{session.id}/stream"


def _running_turn(session: ChatSession) -> str | None:
    meta = turn_meta_get(session.id)
    return meta.turn_id if meta is not None and meta.is_running else None


def _idle(session: ChatSession) -> bool:
    return _running_turn(session) is None


def _start_turn(base: str, p: Person, session: ChatSession, text: str, delay_ms: int, into: SseResult) -> str:
    """Start a turn over SSE on a thread (its reader keeps the whole stream) and wait until it runs."""
    body = {"message": "go " + fake({"text": text, "chunk_size": 3, "delay_ms": delay_ms})}
    threading.Thread(
        target=read_sse, args=("POST", _stream_url(base, session)), kwargs={"headers": p.headers, "json_body": body,
                                                                           "into": into}, daemon=True
    ).start()  # fmt: skip
    return str(wait_until(lambda: "text-delta" in into.types and _running_turn(session)))


async def _nothing_more(ws: WsClient, seconds: float) -> list[dict[str, Any]]:
    """The frames that arrive within `seconds` (expected: none)."""
    extra: list[dict[str, Any]] = []
    try:
        while True:
            extra.append(await ws.recv(timeout=seconds))
    except TimeoutError:
        return extra


def test_a_subscription_replays_the_running_turn_as_sse_payloads_and_ends_on_finish(stack: str) -> None:
    # given: a turn running in alice's chat, read over SSE from its start
    alice = person("alice")
    sse = SseResult(0, {})
    text = "".join(f"w{i} " for i in range(12))
    turn_id = _start_turn(stack, alice, alice.session, text, 40, sse)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with WsClient(stack, None, alice.headers) as ws:
            # when: the user's socket subscribes to that chat mid-turn
            await ws.send({"action": "subscribe", "session_id": str(alice.session.id)})
            await ws.until(lambda f: f.get("type") == "finish")
            after = await _nothing_more(ws, 0.5)
            return ws.frames, [f for f in after if f.get("type") != "copilot_completion"]

    frames, after_finish = asyncio.run(scenario())
    wait_until(lambda: sse.done)
    # then: `subscribed` first, then exactly the SSE stream's data payloads, from the turn's
    # start (no envelope, no [DONE]), and nothing after `finish`
    assert frames[0] == {"type": "subscribed", "session_id": str(alice.session.id), "turn_id": turn_id}
    chunks = [f for f in frames[1:] if f.get("type") not in ("heartbeat", "copilot_completion")]
    assert chunks == [chunk for _, chunk in sse.events]
    assert frames[1]["type"] == "start"
    assert "".join(f["delta"] for f in frames if f.get("type") == "text-delta") == text
    assert after_finish == []


def test_an_idle_chat_answers_subscribed_then_finish(stack: str) -> None:
    alice = person("alice")

    async def scenario() -> list[dict[str, Any]]:
        async with WsClient(stack, None, alice.headers) as ws:
            await ws.send({"action": "subscribe", "session_id": str(alice.session.id)})
            await ws.until(lambda f: f.get("type") == "finish", timeout=10)
            await _nothing_more(ws, 0.5)
            return ws.frames

    assert asyncio.run(scenario()) == [
        {"type": "subscribed", "session_id": str(alice.session.id), "turn_id": None},
        {"type": "finish"},
    ]


def test_a_new_subscribe_replaces_the_current_one_and_a_foreign_chat_changes_nothing(stack: str) -> None:
    # given: two slow turns running in two of alice's chats; bob has a chat too
    alice, bob = person("alice"), person("bob")
    second = ChatSession.objects.create(user=alice.user)
    first_sse, second_sse = SseResult(0, {}), SseResult(0, {})
    first_text = "".join(f"a{i} " for i in range(40))
    second_text = "".join(f"b{i} " for i in range(30))
    _start_turn(stack, alice, alice.session, first_text, 50, first_sse)
    second_turn = _start_turn(stack, alice, second, second_text, 50, second_sse)

    async def scenario() -> list[dict[str, Any]]:
        async with WsClient(stack, None, alice.headers) as ws:
            await ws.send({"action": "subscribe", "session_id": str(alice.session.id)})
            await ws.until(lambda f: f.get("type") == "text-delta")
            # when: bob's chat and a made-up id are asked for, then the second chat
            await ws.send({"action": "subscribe", "session_id": str(bob.session.id)})
            await ws.until(lambda f: f.get("type") == "error", timeout=10)
            await ws.send({"action": "subscribe", "session_id": "not-a-chat"})
            await ws.until(lambda f: f.get("type") == "error" and "not-a-chat" in f["errorText"], timeout=10)
            await ws.until(lambda f: f.get("type") == "text-delta")  # the first subscription goes on
            await ws.send({"action": "subscribe", "session_id": str(second.id)})
            await ws.until(lambda f: f.get("type") == "finish")
            return ws.frames

    frames = asyncio.run(scenario())
    # then: the refused subscribes were errors and the first subscription went on meanwhile
    errors = [i for i, f in enumerate(frames) if f.get("type") == "error"]
    assert [frames[i] for i in errors] == [
        {"type": "error", "errorText": f"Session {bob.session.id} not found."},
        {"type": "error", "errorText": "Session not-a-chat not found."},
    ]
    switch = frames.index({"type": "subscribed", "session_id": str(second.id), "turn_id": second_turn})
    deltas = [(i, f["delta"]) for i, f in enumerate(frames) if f.get("type") == "text-delta"]
    assert any(errors[1] < i < switch and d.startswith("a") for i, d in deltas)
    # and after the switch only the second chat's turn, whole, from its start, ending the subscription
    assert frames[switch + 1]["type"] == "start"
    assert "".join(d for i, d in deltas if i > switch) == second_text
    assert [f.get("type") for f in frames].count("finish") == 1
    assert not any(d.startswith("b") for i, d in deltas if i < switch)


def test_unsubscribe_stops_the_frames_and_the_turn_goes_on(stack: str) -> None:
    # given: a slow turn followed by the user's socket
    alice = person("alice")
    sse = SseResult(0, {})
    text = "".join(f"u{i} " for i in range(30))
    _start_turn(stack, alice, alice.session, text, 60, sse)

    async def scenario() -> list[dict[str, Any]]:
        async with WsClient(stack, None, alice.headers) as ws:
            await ws.send({"action": "subscribe", "session_id": str(alice.session.id)})
            await ws.until(lambda f: f.get("type") == "text-delta")
            # when
            await ws.send({"action": "unsubscribe"})
            # frames already on the wire arrive before the answer; none may follow it
            await ws.until(lambda f: f.get("type") == "unsubscribed")
            ws.frames.clear()
            return await _nothing_more(ws, 1.0)

    after = asyncio.run(scenario())
    # then: no chunk reached the socket for a second while the turn still streamed (the
    # user's completion notices are not part of a subscription) ...
    assert [f for f in after if f.get("type") != "copilot_completion"] == []
    assert not sse.done
    # ... and the turn ran to its end, its answer saved whole
    wait_until(lambda: _idle(alice.session))
    assert TurnUsage.objects.get(session=alice.session).outcome == "completed"
    assert ChatMessage.objects.get(session=alice.session, role="assistant").content == text


def test_bad_frames_get_error_frames_and_completion_notices_arrive(stack: str) -> None:
    alice = person("alice")

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with WsClient(stack, None, alice.headers) as ws:
            for raw in ('["subscribe"]', '{"action": "watch"}', '{"action": "subscribe"}',
                        '{"action": "subscribe", "session_id": 7}',
                        '{"action": "unsubscribe", "session_id": "x"}'):  # fmt: skip
                await ws.ws.send(raw)
            errors = [await ws.recv(timeout=10) for _ in range(5)]
            # when: a turn of alice's ends in a chat the socket does not follow
            body = {"message": "hi " + fake({"text": "done"})}
            await asyncio.to_thread(read_sse, "POST", _stream_url(stack, alice.session), headers=alice.headers,
                                    json_body=body)  # fmt: skip
            notice = await ws.until(lambda f: f.get("type") == "copilot_completion", timeout=15)
            return errors, notice

    errors, notice = asyncio.run(scenario())
    assert [e["errorText"] for e in errors] == [
        "A frame must be a JSON object.",
        "Unknown action; expected subscribe or unsubscribe.",
        "Missing field(s): session_id.",
        "Field session_id must be a string.",
        "Unexpected field(s): session_id.",
    ]
    assert {e["type"] for e in errors} == {"error"}
    assert notice == {"type": "copilot_completion", "event": "session_completed",
                      "session_id": str(alice.session.id), "status": "completed"}  # fmt: skip


def test_the_subscribe_socket_refuses_anonymous_clients(stack: str) -> None:
    url = stack.replace("http://", "ws://") + "/ws/chat/"

    async def close_code() -> int | None:
        try:
            async with websockets.connect(url, additional_headers={"Origin": stack}, open_timeout=10) as ws:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                raise AssertionError(f"an anonymous socket got {frame}")
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    assert asyncio.run(close_code()) == 4401
