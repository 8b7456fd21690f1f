"""Turns end to end: daphne + a real Celery worker + Redis + the scripted LLM over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest

from chat.models import ChatMessage, ChatSession, TurnUsage
from chat.turns import scripts as rs
from chat.turns.pending import pending_peek
from chat.turns.registry import turn_meta_get
from tests.chat.turns.helpers import Person, SseResult, WsClient, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
}

# A client that accepts JSON and not the stream: a queued follow-up answers 202 JSON.
JSON_ONLY = {"Accept": "application/json"}


def _stream_url(base: str, p: Person) -> str:
    return f"{base}/api/chat/sessions/{p.session.id}/stream"


def _idle(p: Person) -> bool:
    meta = turn_meta_get(p.session.id)
    return meta is None or not meta.is_running


def _rows(p: Person) -> list[tuple[str, str | None]]:
    return [(m.role, m.content) for m in ChatMessage.objects.filter(session=p.session).order_by("sequence")]


def _llm_messages(fake_llm: Any) -> list[dict[str, Any]]:
    completions = [r for r in fake_llm.requests if r["path"].endswith("/chat/completions")]
    return completions[-1]["body"]["messages"]


def test_sse_post_streams_a_whole_turn_with_ai_sdk_framing(stack: str) -> None:
    # given
    alice = person("alice")
    message = "Say hello " + fake({"text": "Hello there, friend.", "chunk_size": 5})
    # when
    result = read_sse("POST", _stream_url(stack, alice), headers=alice.headers, json_body={"message": message})
    # then
    assert result.status == 200
    assert {k: result.headers[k] for k in SSE_HEADERS} == SSE_HEADERS
    assert result.types == [
        "start", "start-step", "text-start", "text-delta", "text-delta", "text-delta", "text-delta",
        "text-end", "finish-step", "data-usage", "finish",
    ]  # fmt: skip
    assert result.done is True
    assert result.text() == "Hello there, friend."
    assert all(event_id for event_id, _ in result.events[:-1])
    assert set(result.events[0][1]) == {"type", "messageId"}
    wait_until(lambda: _idle(alice))
    assert _rows(alice) == [("user", message), ("assistant", "Hello there, friend.")]
    turn = TurnUsage.objects.get(session=alice.session)
    assert turn.outcome == "completed"
    answer = ChatMessage.objects.get(session=alice.session, role="assistant")
    assert answer.duration_ms is not None
    assert 0 < answer.duration_ms < 30_000
    assert ChatMessage.objects.get(session=alice.session, role="user").duration_ms is None


def test_two_websockets_see_identical_event_sequences(stack: str) -> None:
    alice = person("alice")

    async def scenario() -> tuple[list[Any], list[Any], list[str], list[str]]:
        async with (
            WsClient(stack, alice.session.id, alice.headers) as a,
            WsClient(stack, alice.session.id, alice.headers) as b,
        ):
            script = fake({"text": "one two three four", "chunk_size": 4, "delay_ms": 20})
            await a.send({"type": "send", "message": "hi " + script, "client_message_id": "c-1"})
            chunks_a = await a.until_finish()
            chunks_b = await b.until_finish()
            return chunks_a, chunks_b, a.event_ids(), b.event_ids()

    chunks_a, chunks_b, ids_a, ids_b = asyncio.run(scenario())
    assert chunks_a == chunks_b
    assert ids_a == ids_b
    assert len(ids_a) == len(set(ids_a))
    assert [c["type"] for c in chunks_a][0] == "start"
    assert "".join(c["delta"] for c in chunks_a if c["type"] == "text-delta") == "one two three four"


def test_websocket_frames_of_every_length_arrive_intact(stack: str) -> None:
    # given: one 17,000-character delta (over 64 KiB as a frame), next to ordinary frames
    alice = person("alice")
    big = "😀é" * 8500
    script = "<<fake " + json.dumps({"text": big + " ok", "chunk_size": len(big)}, ensure_ascii=False) + ">>"

    async def scenario() -> list[dict[str, Any]]:
        async with WsClient(stack, alice.session.id, alice.headers) as ws:
            await ws.send({"type": "send", "message": "big " + script})
            return await ws.until_finish()

    # when
    chunks = asyncio.run(scenario())
    # then: every frame parsed (short, 16-bit and 64-bit lengths), the text exactly as sent
    assert [c["delta"] for c in chunks if c["type"] == "text-delta"] == [big, " ok"]
    assert [c["type"] for c in chunks][-1] == "finish"


def test_disconnect_then_resume_misses_nothing_and_repeats_nothing(stack: str) -> None:
    # given: a slow turn, and an SSE client that drops after three text deltas
    alice = person("alice")
    text = "".join(f"w{i} " for i in range(30))
    message = "go " + fake({"text": text, "chunk_size": 3, "delay_ms": 40})
    first = read_sse(
        "POST",
        _stream_url(stack, alice),
        headers=alice.headers,
        json_body={"message": message},
        stop_when=lambda r: r.types.count("text-delta") == 3,
    )
    assert first.done is False
    assert TurnUsage.objects.get(session=alice.session).outcome == "running"  # the turn goes on
    # when: resume with Last-Event-ID over SSE
    last_id = first.events[-1][0]
    rest = read_sse("GET", _stream_url(stack, alice), headers={**alice.headers, "Last-Event-ID": last_id})
    # then
    ids = [i for i, _ in first.events] + [i for i, _ in rest.events if i]
    assert len(ids) == len(set(ids))
    assert first.text() + rest.text() == text
    assert rest.types[-1] == "finish"
    assert rest.done is True


def test_resume_over_websocket_replays_from_after(stack: str) -> None:
    alice = person("alice")
    text = "".join(f"x{i} " for i in range(25))

    async def scenario() -> tuple[list[Any], list[Any]]:
        async with WsClient(stack, alice.session.id, alice.headers) as a:
            await a.send({"type": "send", "message": "go " + fake({"text": text, "chunk_size": 3, "delay_ms": 40})})
            await a.until(lambda f: f.get("chunk", {}).get("type") == "text-delta")
            seen = a.chunks()
            after = a.event_ids()[-1]
        async with WsClient(stack, alice.session.id, alice.headers) as b:
            await b.send({"type": "resume", "after": after})
            rest = await b.until_finish()
        return seen, rest

    seen, rest = asyncio.run(scenario())
    combined = seen + rest
    assert "".join(c["delta"] for c in combined if c["type"] == "text-delta") == text
    assert [c["type"] for c in combined].count("start") == 1
    assert [c["type"] for c in combined].count("text-start") == 1


def test_get_stream_on_an_idle_session_is_204(stack: str) -> None:
    alice = person("alice")
    response = httpx.get(_stream_url(stack, alice), headers=alice.headers, timeout=10)
    assert response.status_code == 204
    assert response.content == b""


def test_delete_stream_detaches_every_listener_and_the_turn_goes_on(stack: str) -> None:
    # given: a slow turn followed by a WebSocket (which started it) and an SSE resume
    alice = person("alice")
    text = "".join(f"z{i} " for i in range(40))
    sse = SseResult(0, {})

    async def scenario() -> tuple[httpx.Response, int | None, list[Any]]:
        async with WsClient(stack, alice.session.id, alice.headers) as ws:
            await ws.send({"type": "send", "message": "go " + fake({"text": text, "chunk_size": 3, "delay_ms": 60})})
            await ws.until(lambda f: f.get("chunk", {}).get("type") == "text-delta")
            reader = threading.Thread(
                target=read_sse, args=("GET", _stream_url(stack, alice)), kwargs={"headers": alice.headers, "into": sse}
            )
            reader.start()
            await asyncio.to_thread(wait_until, lambda: "text-delta" in sse.types)
            # when
            detach = await asyncio.to_thread(httpx.delete, _stream_url(stack, alice), headers=alice.headers)
            code = None
            try:
                while True:
                    await ws.recv(timeout=10)
            except Exception as exc:  # noqa: BLE001 - the close is what we wait for
                code = getattr(getattr(exc, "rcvd", None), "code", None)
            await asyncio.to_thread(reader.join, 10)
            return detach, code, ws.chunks()

    detach, close_code, ws_chunks = asyncio.run(scenario())
    # then: 204; the socket was closed with 4000, the SSE response ended without finish or [DONE]
    assert (detach.status_code, detach.content) == (204, b"")
    assert close_code == 4000
    assert "finish" not in [c["type"] for c in ws_chunks]
    assert sse.status == 200 and sse.done is False and "finish" not in sse.types
    assert sse.types[0] == "start"  # it had replayed the turn from its start
    # and the turn ran to its end, its answer saved whole
    wait_until(lambda: _idle(alice))
    assert TurnUsage.objects.get(session=alice.session).outcome == "completed"
    assert ChatMessage.objects.get(session=alice.session, role="assistant").content == text


def test_a_turns_end_is_announced_to_every_socket_of_its_user_only(stack: str) -> None:
    # given: alice watches one chat while a turn runs in another; bob watches his own
    alice, bob = person("alice"), person("bob")
    other = ChatSession.objects.create(user=alice.user)

    def completion(f: dict[str, Any]) -> bool:
        return f.get("type") == "copilot_completion"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with (
            WsClient(stack, alice.session.id, alice.headers) as watcher,
            WsClient(stack, bob.session.id, bob.headers) as bobs,
        ):
            url = f"{stack}/api/chat/sessions/{other.id}/stream"
            body = {"message": "hi " + fake({"text": "done"})}
            await asyncio.to_thread(read_sse, "POST", url, headers=alice.headers, json_body=body)
            # when: the turn in the other chat ends
            notice = await watcher.until(completion, timeout=15)
            # then bob hears nothing of it: the first notice he gets is for his own turn
            await bobs.send({"type": "send", "message": "mine " + fake({"text": "ok"})})
            bobs_notice = await bobs.until(completion, timeout=15)
            return notice, bobs_notice

    notice, bobs_notice = asyncio.run(scenario())
    assert notice == {"type": "copilot_completion", "event": "session_completed", "session_id": str(other.id),
                      "status": "completed"}  # fmt: skip
    assert bobs_notice["session_id"] == str(bob.session.id)


def test_stop_mid_text_then_next_message_starts_a_new_turn_at_once(stack: str, fake_llm: Any) -> None:
    # given: a slow answer, stopped after two deltas
    alice = person("alice")
    slow = "stop me " + fake({"text": "a" * 200, "chunk_size": 2, "delay_ms": 50})
    first = read_sse(
        "POST", _stream_url(stack, alice), headers=alice.headers, json_body={"message": slow},
        stop_when=lambda r: r.types.count("text-delta") == 2,
    )  # fmt: skip
    assert first.status == 200
    # when
    started = time.monotonic()
    cancel = httpx.post(f"{stack}/api/chat/sessions/{alice.session.id}/cancel", headers=alice.headers, timeout=10)
    elapsed = time.monotonic() - started
    second = read_sse(
        "POST", _stream_url(stack, alice), headers=alice.headers,
        json_body={"message": "again " + fake({"text": "fresh answer"})},
    )  # fmt: skip
    # then
    assert cancel.json() == {"cancelled": True, "reason": None}
    assert elapsed < 5
    assert second.status == 200
    assert second.text() == "fresh answer"
    rows = _rows(alice)
    assert rows[0] == ("user", slow)
    assert rows[1][0] == "assistant" and rows[1][1] and set(rows[1][1]) == {"a"}
    assert rows[2] == ("assistant", "Stopped")
    kinds = list(ChatMessage.objects.filter(session=alice.session).order_by("sequence").values_list("kind", flat=True))
    assert kinds == ["message", "message", "stopped", "message", "message"]
    assert rows[3:] == [("user", "again " + fake({"text": "fresh answer"})), ("assistant", "fresh answer")]
    outcomes = list(
        TurnUsage.objects.filter(session=alice.session).order_by("started_at").values_list("outcome", flat=True)
    )
    assert outcomes == ["cancelled", "completed"]
    assert rs.redis_client().exists(rs.cluster_lock_key(alice.session.id)) == 0


def test_stop_mid_tool_leaves_no_orphan_tool_call_in_the_next_request(
    stack: str, fake_llm: Any, slow_http: str
) -> None:
    # given: a tool that takes 3 s, stopped while it runs
    alice = person("alice")
    script = fake({"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]}, {"text": "fetched"})
    first = read_sse(
        "POST", _stream_url(stack, alice), headers=alice.headers, json_body={"message": "fetch " + script},
        stop_when=lambda r: "tool-input-available" in r.types,
    )  # fmt: skip
    httpx.post(f"{stack}/api/chat/sessions/{alice.session.id}/cancel", headers=alice.headers, timeout=10)
    # when
    second = read_sse(
        "POST", _stream_url(stack, alice), headers=alice.headers,
        json_body={"message": "never mind " + fake({"text": "ok"})},
    )  # fmt: skip
    # then
    assert first.status == 200 and second.text() == "ok"
    messages = _llm_messages(fake_llm)
    call_ids = {c["id"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or []}
    answered = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    assert call_ids == answered
    assert not any(
        (m.get("content") or "").startswith("[__COPILOT_SYSTEM__]") or m.get("content") == "Stopped"
        for m in messages
        if isinstance(m.get("content"), str)
    )


def test_followups_sent_during_a_tool_reach_the_next_round_in_stored_order(
    stack: str, fake_llm: Any, slow_http: str
) -> None:
    # given
    alice = person("alice")
    script = fake({"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]}, {"text": "all done"})
    results: list[Any] = []
    reader = threading.Thread(
        target=lambda: results.append(
            read_sse("POST", _stream_url(stack, alice), headers=alice.headers, json_body={"message": "fetch " + script})
        )
    )
    reader.start()
    wait_until(lambda: ChatMessage.objects.filter(session=alice.session, role="tool").exists() or _tool_running(alice))
    # when
    queued = httpx.post(
        _stream_url(stack, alice),
        headers=JSON_ONLY | alice.headers,
        json={"message": "also check the title"},
        timeout=10,
    )
    reader.join(timeout=60)
    # then
    assert queued.status_code == 202
    assert queued.json() == {"buffer_length": 1, "max_buffer_length": 10, "turn_in_flight": True}
    assert results[0].text().endswith("all done")
    drained = [chunk for _, chunk in results[0].events if chunk["type"] == "data-pending-drained"]
    assert len(drained) == 1
    assert "also check the title" in json.dumps(drained[0]["data"])
    rows = [(role, content) for role, content in _rows(alice) if role != "reasoning"]
    assert [role for role, _ in rows] == ["user", "assistant", "tool", "user", "assistant"]
    assert rows[3] == ("user", "also check the title")
    assert rows[4] == ("assistant", "all done")
    last_request = _llm_messages(fake_llm)
    follow_up = [m for m in last_request if m["role"] == "user" and "<user_follow_up>" in str(m["content"])]
    assert len(follow_up) == 1
    assert "also check the title" in str(follow_up[0]["content"])
    assert pending_peek(alice.session.id) == []


def _tool_running(p: Person) -> bool:
    return ChatMessage.objects.filter(session=p.session, role="assistant").exclude(tool_calls=[]).exists()


def test_duplicate_client_message_id_makes_one_message_and_one_turn(stack: str) -> None:
    alice = person("alice")
    body = {"message": "once " + fake({"text": "only once", "delay_ms": 30}), "client_message_id": "dup-1"}
    first = read_sse("POST", _stream_url(stack, alice), headers=alice.headers, json_body=body)
    second = read_sse("POST", _stream_url(stack, alice), headers=alice.headers, json_body=body)
    assert first.status == second.status == 200
    assert second.text() == first.text() == "only once"  # the retry replays the same turn
    assert [c for _, c in second.events] == [c for _, c in first.events]
    assert ChatMessage.objects.filter(session=alice.session, role="user").count() == 1
    assert TurnUsage.objects.filter(session=alice.session).count() == 1
    assert pending_peek(alice.session.id) == []


def test_twenty_concurrent_sends_start_exactly_one_turn(stack: str) -> None:
    # given
    alice = person("alice")
    script = fake({"text": "x" * 100, "chunk_size": 1, "delay_ms": 50})
    statuses: dict[int, int] = {}
    barrier = threading.Barrier(20)

    def send(i: int) -> None:
        barrier.wait()
        body = {"message": f"msg {i} {script}"}
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", _stream_url(stack, alice), headers=JSON_ONLY | alice.headers, json=body) as response,
        ):
            statuses[i] = response.status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    # when
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    try:
        assert sorted(statuses) == list(range(20))
        assert sorted(statuses.values()).count(200) == 1
        assert set(statuses.values()) <= {200, 202, 429}
        assert TurnUsage.objects.filter(session=alice.session).count() == 1
        # Sends queued while the winner dispatched joined the turn as user rows, through
        # two drains (the dispatcher's, then the worker's at turn start); later ones wait,
        # at most ten. A send that does not fit in the buffer is refused (429), never
        # queued and then dropped: every accepted send is in exactly one place.
        turn = TurnUsage.objects.get(session=alice.session)
        user_rows = list(ChatMessage.objects.filter(session=alice.session, role="user"))
        assert {m.turn_id for m in user_rows} == {turn.turn_id}
        rows = [m.content.split()[1] for m in user_rows]
        waiting = [m.content.split()[1] for m in pending_peek(alice.session.id)]
        assert len(waiting) <= 10
        assert len(set(rows + waiting)) == len(rows) + len(waiting)  # nothing twice
        assert sorted(rows + waiting, key=int) == [str(i) for i, code in sorted(statuses.items()) if code != 429]
    finally:
        httpx.post(f"{stack}/api/chat/sessions/{alice.session.id}/cancel", headers=alice.headers, timeout=10)
        wait_until(lambda: _idle(alice))


def test_next_turn_followup_waits_for_the_turn_to_end_then_auto_continues(
    stack: str, fake_llm: Any, slow_http: str
) -> None:
    # given: a turn busy in a 3 s tool
    alice = person("alice")
    script = fake({"tool_calls": [{"name": "web_fetch", "arguments": {"url": slow_http}}]}, {"text": "all done"})
    results: list[Any] = []
    reader = threading.Thread(
        target=lambda: results.append(
            read_sse("POST", _stream_url(stack, alice), headers=alice.headers, json_body={"message": "fetch " + script})
        )
    )
    reader.start()
    wait_until(lambda: _tool_running(alice))
    # when: a follow-up meant for the next turn
    queued = httpx.post(
        _stream_url(stack, alice),
        headers=JSON_ONLY | alice.headers,
        json={"message": "later please", "delivery": "next_turn"},
        timeout=10,
    )
    reader.join(timeout=60)
    # then: the running turn never saw it; a second turn answered it
    assert queued.status_code == 202
    assert results[0].text() == "all done"
    wait_until(lambda: TurnUsage.objects.filter(session=alice.session).count() == 2 and _idle(alice))
    rows = [(role, content) for role, content in _rows(alice) if role not in ("reasoning", "tool")]
    assert [r for r, _ in rows] == ["user", "assistant", "assistant", "user", "assistant"]
    assert rows[2] == ("assistant", "all done")
    assert rows[3] == ("user", "later please")
    first_turn_requests = [r["body"]["messages"] for r in fake_llm.requests if r["path"].endswith("/chat/completions")]
    assert not any(
        "<user_follow_up>" in str(m.get("content")) for msgs in first_turn_requests for m in msgs if m["role"] == "user"
    )
    assert _outcomes(alice) == [
        "completed", "completed"
    ]  # fmt: skip


def test_over_the_daily_limit_a_send_is_refused_over_http_and_websocket(stack: str) -> None:
    from ratelimits.models import TierLimit
    from ratelimits.services import usage_record

    # given: a 1-cent daily limit, already spent
    # (transactional tests flush tables, seeded rows included: write the row outright)
    TierLimit.objects.update_or_create(
        tier="FREE", defaults={"daily_limit_microdollars": 10_000, "weekly_limit_microdollars": 5_000_000}
    )
    alice = person("alice")
    usage_record(user=alice.user, microdollars=10_000)
    # when
    response = httpx.post(_stream_url(stack, alice), headers=alice.headers, json={"message": "hello"}, timeout=10)

    async def over_ws() -> dict[str, Any]:
        async with WsClient(stack, alice.session.id, alice.headers) as ws:
            await ws.send({"type": "send", "message": "hello"})
            return await ws.recv()

    frame = asyncio.run(over_ws())
    # then
    assert response.status_code == 429
    body = response.json()
    assert body["window"] == "daily"
    assert body["detail"].startswith("You've reached your daily usage limit. Resets in ")
    assert frame == {"type": "rate_limited", "window": "daily", "resets_at": body["resets_at"]}
    assert ChatMessage.objects.filter(session=alice.session).count() == 0
    assert TurnUsage.objects.filter(session=alice.session).count() == 0
    assert turn_meta_get(alice.session.id) is None


def test_websocket_send_while_busy_is_queued(stack: str) -> None:
    alice = person("alice")

    async def scenario() -> tuple[dict[str, Any], list[Any]]:
        async with WsClient(stack, alice.session.id, alice.headers) as ws:
            await ws.send(
                {"type": "send", "message": "long " + fake({"text": "z" * 40, "chunk_size": 2, "delay_ms": 50})}
            )
            await ws.until(lambda f: f.get("chunk", {}).get("type") == "text-delta")
            await ws.send({"type": "send", "message": "and another thing", "delivery": "now"})
            queued = await ws.until(lambda f: f.get("type") == "queued")
            await ws.send({"type": "stop"})
            await ws.until(lambda f: f.get("type") == "stopped")
            return queued, ws.frames

    queued, _ = asyncio.run(scenario())
    assert queued == {"type": "queued", "buffer_length": 1, "max_buffer_length": 10, "turn_in_flight": True}
    assert [m.content for m in pending_peek(alice.session.id)] == ["and another thing"]


def _outcomes(p: Any) -> list[str]:
    return list(TurnUsage.objects.filter(session=p.session).order_by("started_at").values_list("outcome", flat=True))


def test_the_turn_that_crosses_80_percent_ends_with_a_usage_warning_once(stack: str) -> None:
    from ratelimits.models import TierLimit

    # given: a $0.01 day, 79 % used; each scripted turn costs $0.0005 (5 %)
    TierLimit.objects.update_or_create(
        tier="FREE", defaults={"daily_limit_microdollars": 10_000, "weekly_limit_microdollars": 0}
    )
    alice = person("alice")
    from ratelimits.services import usage_record

    usage_record(user=alice.user, microdollars=7_900)
    script = fake({"text": "ok", "usage": {"prompt_tokens": 10, "completion_tokens": 2, "cost": 0.0005}})
    # when
    first = read_sse("POST", _stream_url(stack, alice), headers=alice.headers, json_body={"message": "a " + script})
    second = read_sse("POST", _stream_url(stack, alice), headers=alice.headers, json_body={"message": "b " + script})
    # then
    warnings = [chunk for _, chunk in first.events if chunk["type"] == "data-usage-warning"]
    assert len(warnings) == 1
    assert warnings[0]["data"]["window"] == "daily"
    assert warnings[0]["data"]["percent_used"] == 84.0
    assert first.types[-2:] == ["data-usage-warning", "finish"]
    assert "data-usage-warning" not in second.types
