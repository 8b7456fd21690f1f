"""A follow-up sent while a turn runs, by a client that accepts SSE: 200 `text/event-stream`
with `data-queued`, then the turn that answers it (never the running turn, which the client
reads on its first stream); that first stream sends its `finish` once the follow-up's ended."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from chat.models import ChatMessage, TurnUsage
from chat.turns import scripts as rs
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


def _start_held_turn(stack: str, alice: Person, script: str) -> tuple[threading.Thread, SseResult, list[Any]]:
    """Like _start_slow_turn; `ended` gets the session's turn meta when the first stream ends."""
    first = SseResult(0, {})
    ended: list[Any] = []

    def run() -> None:
        read_sse(
            "POST", _url(stack, alice), headers=alice.headers, json_body={"message": "first " + script}, into=first
        )
        ended.append(turn_meta_get(alice.session.id))

    reader = threading.Thread(target=run)
    reader.start()
    wait_until(lambda: first.text() != "")
    return reader, first, ended


def _well_formed(chunks: list[dict[str, Any]]) -> bool:
    """Every delta's part was started in the same stream (the AI SDK refuses any other)."""
    started: set[str] = set()
    for chunk in chunks:
        if chunk["type"] in ("text-start", "reasoning-start"):
            started.add(chunk["id"])
        elif chunk["type"] in ("text-delta", "reasoning-delta", "text-end", "reasoning-end") and (
            chunk["id"] not in started
        ):
            return False
    return True


def test_a_followup_to_a_running_turn_streams_the_turn_that_answers_it(stack: str) -> None:
    # given: a slow turn, streaming
    alice = person("alice")
    first_text = "one two three four five six seven eight nine ten " * 3
    script = fake({"text": first_text, "chunk_size": 5, "delay_ms": 60})
    reader, first, ended = _start_held_turn(stack, alice, script)
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
    turns = list(TurnUsage.objects.filter(session=alice.session).order_by("id").values_list("turn_id", flat=True))
    assert len(turns) == 2
    assert [c["messageId"] for c in chunks if c["type"] == "start"] == [str(turns[1])]  # the answer's turn only
    assert _text(chunks) == "The follow-up answer."  # the running turn is not relayed again
    assert _well_formed(chunks)
    ids = [event_id for event_id, _ in events[1:-1]]  # httpx-sse repeats the last id on id-less events
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))  # in log order
    # the first stream: its own turn whole, its `finish` held until the follow-up was answered
    assert first.text() == first_text
    assert first.types[-1] == "finish" and first.done is True
    assert [(m.turn_id, m.status) for m in ended] == [(str(turns[1]), "completed")]
    rows = [(m.role, m.content) for m in ChatMessage.objects.filter(session=alice.session).order_by("sequence")]
    assert [r for r in rows if r[0] in ("user", "assistant")][-2:] == [
        ("user", body["message"]),
        ("assistant", "The follow-up answer."),
    ]
    assert pending_peek(alice.session.id) == []


def test_a_followup_sent_mid_text_part_is_a_stream_the_ai_sdk_accepts(stack: str) -> None:
    # given: a slow text part, streaming (regression: the follow-up's stream relayed the rest of
    # that part without its `text-start`, and the AI SDK's useChat failed on the first delta)
    alice = person("alice")
    first_text = "x" * 60
    reader, first, _ = _start_held_turn(stack, alice, fake({"text": first_text, "chunk_size": 2, "delay_ms": 40}))
    # when
    followup = read_sse(
        "POST", _url(stack, alice), headers=alice.headers, json_body={"message": "more " + fake({"text": "More."})}
    )
    reader.join(timeout=60)
    # then
    chunks = [c for _, c in followup.events]
    assert _well_formed(chunks)
    assert followup.text() == "More."
    assert "x" not in followup.text()
    assert first.text() == first_text


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
    # then: the follow-up's stream stayed open while the running turn (which took it) ran,
    # relayed none of it (its sender reads it on its first stream) and ended with it
    assert followup.status == 200
    assert followup.done is True
    assert followup.events[0][1] == {"type": "data-queued", "data": {"position": 1, "client_message_id": None}}
    assert followup.types == ["data-queued", "finish"]
    assert results[0].text() == "all done"
    assert [t for t in results[0].types if t.startswith("data-pending")] == ["data-pending-drained"]
    assert TurnUsage.objects.filter(session=alice.session).count() == 1
    wait_until(lambda: _idle(alice))


def test_a_follow_up_stream_record_left_by_a_dead_web_process_holds_a_finish_only_until_it_lapses(stack: str) -> None:
    # given: the record of a follow-up stream whose web process died (never closed), lapsing in 3 s
    alice = person("alice")
    rs.redis_client().zadd(rs.followup_streams_key(alice.session.id), {"dead-stream": time.time() + 3})
    # when: a turn streams to its end
    started = time.monotonic()
    held = read_sse(
        "POST", _url(stack, alice), headers=alice.headers, json_body={"message": "hi " + fake({"text": "Hi."})}
    )
    took = time.monotonic() - started
    # then: its finish waited for the record to lapse, then came (no error, nothing lost)
    assert held.types[-1] == "finish" and held.done is True
    assert held.text() == "Hi."
    assert 2 <= took < 20
    assert rs.redis_client().zcount(rs.followup_streams_key(alice.session.id), time.time(), "+inf") == 0


def test_a_lapsed_follow_up_stream_record_holds_nothing(stack: str) -> None:
    # given: a record that lapsed a second ago
    alice = person("alice")
    rs.redis_client().zadd(rs.followup_streams_key(alice.session.id), {"dead-stream": time.time() - 1})
    # when
    started = time.monotonic()
    done = read_sse(
        "POST", _url(stack, alice), headers=alice.headers, json_body={"message": "hi " + fake({"text": "Hi."})}
    )
    # then
    assert done.types[-1] == "finish" and done.text() == "Hi."
    assert time.monotonic() - started < 5  # a held finish would wait 10 s for the chat to go idle
