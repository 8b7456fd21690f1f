"""A follow-up sent while a turn runs, by a client that accepts SSE: 200 `text/event-stream`
with `data-queued`, then the running turn from now on and the turn that answers it."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from chat.models import ChatMessage, TurnUsage
from chat.turns.pending import pending_peek
from chat.turns.registry import turn_meta_get
from tests.chat.turns.helpers import Person, SseResult, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _url(base: str, p: Person) -> str:
    return f"{base}/api/chat/sessions/{p.session.id}/stream"


def _idle(p: Person) -> bool:
    meta = turn_meta_get(p.session.id)
    return meta is None or not meta.is_running


def _text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


def _start_slow_turn(stack: str, alice: Person, script: str) -> tuple[threading.Thread, SseResult]:
    first = SseResult(0, {})
    reader = threading.Thread(
        target=read_sse,
        args=("POST", _url(stack, alice)),
        kwargs={"headers": alice.headers, "json_body": {"message": "first " + script}, "into": first},
    )
    reader.start()
    wait_until(lambda: first.text() != "")  # the first turn is streaming
    return reader, first


def test_a_followup_to_a_running_turn_streams_the_rest_and_its_answer(stack: str) -> None:
    # given: a slow turn, streaming
    alice = person("alice")
    first_text = "one two three four five six seven eight nine ten " * 3
    script = fake({"text": first_text, "chunk_size": 5, "delay_ms": 60})
    reader, first = _start_slow_turn(stack, alice, script)
    # when: a follow-up for the next turn, read by an SSE client
    body = {
        "message": "and then? " + fake({"text": "The follow-up answer."}),
        "client_message_id": "fu-1",
        "delivery": "next_turn",
    }
    with (
        httpx.Client(headers=alice.headers, timeout=60) as client,
        connect_sse(client, "POST", _url(stack, alice), json=body) as source,
    ):
        status, content_type = source.response.status_code, source.response.headers["content-type"]
        events = [(event.id, event.data) for event in source.iter_sse()]
    reader.join(timeout=60)
    # then
    assert (status, content_type) == (200, "text/event-stream")
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert chunks[0] == {"type": "data-queued", "data": {"position": 1, "client_message_id": "fu-1"}}
    assert [c["type"] for c in chunks].count("finish") == 1
    assert chunks[-1]["type"] == "finish"
    assert TurnUsage.objects.filter(session=alice.session).count() == 2
    starts = [c["messageId"] for c in chunks if c["type"] == "start"]
    assert len(starts) == 1  # the first turn's `start` came before the follow-up: not sent again
    relayed = _text(chunks)
    assert relayed.endswith("The follow-up answer.")
    tail_of_first = relayed[: -len("The follow-up answer.")]
    assert tail_of_first == first_text[len(first_text) - len(tail_of_first) :]  # the first turn's rest, once
    assert len(tail_of_first) < len(first_text)  # from the moment of the follow-up, not replayed
    ids = [event_id for event_id, _ in events[1:-1]]  # httpx-sse repeats the last id on id-less events
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))  # in log order
    assert first.text() == first_text
    rows = [(m.role, m.content) for m in ChatMessage.objects.filter(session=alice.session).order_by("sequence")]
    assert [r for r in rows if r[0] in ("user", "assistant")][-2:] == [
        ("user", body["message"]),
        ("assistant", "The follow-up answer."),
    ]
    assert pending_peek(alice.session.id) == []


def test_a_followup_taken_by_the_running_turn_ends_with_that_turn(stack: str, slow_http: str) -> None:
    # given: a turn busy in a slow tool, with a second round to come
    alice = person("alice")
    script = fake({"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]}, {"text": "all done"})
    results: list[SseResult] = []
    runner = threading.Thread(
        target=lambda: results.append(
            read_sse("POST", _url(stack, alice), headers=alice.headers, json_body={"message": "fetch " + script})
        )
    )
    runner.start()
    wait_until(
        lambda: ChatMessage.objects.filter(session=alice.session, role="assistant").exclude(tool_calls=[]).exists()
    )
    # when: a follow-up the running turn takes at its next round
    followup = read_sse(
        "POST",
        _url(stack, alice),
        headers={**alice.headers, "Accept": "text/event-stream"},
        json_body={"message": "also check the title"},
    )
    runner.join(timeout=60)
    # then: one stream, the running turn's rest, ending with its finish; no second turn
    assert followup.status == 200
    assert followup.done is True
    assert followup.events[0][1] == {"type": "data-queued", "data": {"position": 1, "client_message_id": None}}
    assert followup.types[-1] == "finish" and followup.types.count("finish") == 1
    assert "start" not in followup.types
    assert followup.text() == results[0].text() == "all done"
    assert [t for t in followup.types if t.startswith("data-pending")] == ["data-pending-drained"]
    assert TurnUsage.objects.filter(session=alice.session).count() == 1
    wait_until(lambda: _idle(alice))
