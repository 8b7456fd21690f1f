"""A full follow-up buffer says no (429) instead of dropping what it answered 202 for."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from django.conf import settings

from chat.models import ChatMessage, TurnUsage
from chat.turns.pending import pending_peek
from chat.turns.registry import turn_meta_get
from tests.chat.turns.helpers import SseResult, WsClient, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _idle(session_id: object) -> bool:
    meta = turn_meta_get(session_id)
    return meta is None or not meta.is_running


def test_followups_past_the_buffer_are_refused_and_every_accepted_one_is_answered_once(stack: str) -> None:
    # given: a slow turn running
    alice = person("alice")
    url = f"{stack}/api/chat/sessions/{alice.session.id}/stream"
    limit = settings.COPILOT_PENDING_MAX
    first = "slow " + fake({"text": "z" * 40, "chunk_size": 1, "delay_ms": 100})
    streamed = SseResult(0, {})
    reader = threading.Thread(
        target=lambda: read_sse("POST", url, headers=alice.headers, json_body={"message": first}, into=streamed)
    )
    reader.start()
    # (text flows only after the turn took the buffer at its start)
    wait_until(lambda: "text-delta" in streamed.types)
    # when: N + 3 follow-ups, one after the other, from a JSON client (202 JSON when queued)
    json_client = {**alice.headers, "Accept": "application/json"}
    answers = [
        httpx.post(url, headers=json_client, json={"message": f"follow-up {i}"}, timeout=10) for i in range(limit + 3)
    ]
    # then: the first N are queued, the rest refused with the buffer's size
    assert [a.status_code for a in answers] == [202] * limit + [429] * 3
    assert [a.json()["buffer_length"] for a in answers[:limit]] == list(range(1, limit + 1))
    for refused in answers[limit:]:
        assert refused.json() == {
            "detail": f"This chat already has {limit} messages waiting for the current reply; "
            "send this one once the reply has taken them.",
            "code": "pending_full",
            "pending_max": limit,
        }
        assert refused.headers["Retry-After"] == "5"
    assert [m.content for m in pending_peek(alice.session.id)] == [f"follow-up {i}" for i in range(limit)]
    # and: the first turn ends, the queued ones start the next (auto-continue) and are answered
    reader.join(timeout=60)
    assert streamed.types[-1] == "finish"
    wait_until(lambda: TurnUsage.objects.filter(session=alice.session).count() == 2 and _idle(alice.session.id))
    user_rows = list(
        ChatMessage.objects.filter(session=alice.session, role="user")
        .order_by("sequence")
        .values_list("content", flat=True)
    )
    assert user_rows == [first] + [f"follow-up {i}" for i in range(limit)]  # each once, none of the refused
    assert list(TurnUsage.objects.filter(session=alice.session).values_list("outcome", flat=True)) == [
        "completed", "completed"
    ]  # fmt: skip
    roles = list(ChatMessage.objects.filter(session=alice.session).order_by("sequence").values_list("role", flat=True))
    assert roles[-1] == "assistant"  # the follow-ups got their answer
    assert pending_peek(alice.session.id) == []


def test_a_full_buffer_refuses_a_websocket_send_with_its_code(stack: str) -> None:
    import asyncio

    alice = person("alice")
    limit = settings.COPILOT_PENDING_MAX
    first = "slow " + fake({"text": "z" * 40, "chunk_size": 1, "delay_ms": 100})

    async def scenario() -> list[dict[str, Any]]:
        async with WsClient(stack, alice.session.id, alice.headers) as ws:
            await ws.send({"type": "send", "message": first})
            await ws.until(lambda f: f.get("chunk", {}).get("type") == "text-delta")
            for i in range(limit + 1):
                await ws.send({"type": "send", "message": f"follow-up {i}"})
                await ws.until(lambda f: f.get("type") in ("queued", "error"))
            return [f for f in ws.frames if f.get("type") in ("queued", "error")]

    frames = asyncio.run(scenario())
    assert [f["type"] for f in frames] == ["queued"] * limit + ["error"]
    assert frames[-1] == {
        "type": "error",
        "code": "pending_full",
        "message": f"This chat already has {limit} messages waiting for the current reply; "
        "send this one once the reply has taken them.",
    }
    assert [m.content for m in pending_peek(alice.session.id)] == [f"follow-up {i}" for i in range(limit)]
    httpx.post(f"{stack}/api/chat/sessions/{alice.session.id}/cancel", headers=alice.headers, timeout=10)
    wait_until(lambda: _idle(alice.session.id))
