"""PostgreSQL stopped for ~10 s while three turns stream, then started again."""

from __future__ import annotations

import functools
import time

import httpx
import pytest

from tests.faults.sse import fake, sse_background
from tests.faults.stack import FaultStack, poll

pytestmark = [pytest.mark.timeout(600)]

OUTAGE_S = 10.0
DATABASE_503 = {
    "detail": "The database is unavailable right now. Try again in a few seconds.",
    "code": "database_unavailable",
}


def test_turns_ending_during_a_database_outage_keep_their_answer(fault_stack: FaultStack) -> None:
    # given: three turns streaming, spread over both web processes
    people = fault_stack.persons_create(3)
    webs = fault_stack.web_urls
    answers = [f"answer {n} " + "".join(f"w{i} " for i in range(12)) for n in range(3)]
    streams = [
        sse_background(
            "POST", p.stream_url(webs[n % 2]), headers=p.headers,
            json_body={"message": f"q{n} " + fake({"text": answers[n], "chunk_size": 3, "delay_ms": 120})},
        )
        for n, p in enumerate(people)
    ]  # fmt: skip
    poll(lambda: all("text-delta" in s.types for s, _ in streams), timeout=60, what="all three streaming")
    # when: the database stops for ~10 s; every API request meanwhile is answered
    fault_stack.pg.stop()
    answered: list[tuple[int, str, object, str]] = []
    try:
        outage_end = time.monotonic() + OUTAGE_S
        n = 0
        while time.monotonic() < outage_end:
            web, p = webs[n % 2], people[n % 3]
            for url in (f"{web}/api/chat/sessions", f"{web}/api/chat/sessions/{p.session}/ui-messages"):
                resp = httpx.get(url, headers=p.headers, timeout=10)
                answered.append((resp.status_code, resp.headers.get("content-type", ""), resp.json(), url))
                assert resp.headers.get("retry-after", "").isdigit(), url
            n += 1
            time.sleep(0.2)  # paces the probes; nothing waits on it
    finally:
        fault_stack.pg.start()
    for _, thread in streams:
        thread.join(timeout=90)
    # then: every outage answer was the API's JSON 503, never a page
    # (each answer takes up to the pool wait, COPILOT_DB_POOL_TIMEOUT_S = 3 s, so a 10 s outage sees a few)
    assert len(answered) >= 3
    assert [(status, ctype, body) for status, ctype, body, _ in answered] == [
        (503, "application/json", DATABASE_503)
    ] * len(answered)
    # and every client saw its whole answer and the end of its stream
    for (stream, thread), answer in zip(streams, answers, strict=True):
        assert not thread.is_alive()
        assert stream.failure is None
        assert stream.status == 200
        assert stream.text() == answer
        assert stream.types[-1] == "finish"
        assert stream.done is True
        assert "error" not in stream.types  # the retried end-of-turn write got through
    # and once the database is back, each transcript holds the answer exactly once,
    # and no turn record is left running
    for p, answer in zip(people, answers, strict=True):
        poll(functools.partial(_settled, fault_stack, p.session), timeout=60, what="the turn record settled")
        assistant = [
            (kind, content) for role, kind, content in fault_stack.transcript(p.session) if role == "assistant"
        ]
        assert [content for kind, content in assistant if kind == "message"] == [answer]
        assert sum((content or "").count(answer) for _, content in assistant) == 1
        assert fault_stack.outcomes(p.session) == ["completed"]
    # and the outage did reach the end of the turns: their end-of-turn write was retried
    worker_logs = "".join(managed.log() for managed, _ in fault_stack.workers)
    assert "End-of-turn write failed (attempt 1)" in worker_logs


def _settled(stack: FaultStack, session: str) -> bool:
    return stack.outcomes(session) != ["running"]


ANSWER_NOT_SAVED_TEXT = (
    "Your answer could not be saved. It is added to this chat as soon as the database is back; "
    "reload the chat in a minute."
)


def test_an_answer_unsaved_through_a_long_outage_is_recovered_from_its_stream(fault_stack: FaultStack) -> None:
    # given: a short turn streaming
    (alice,) = fault_stack.persons_create(1)
    answer = "kept " + "".join(f"v{i} " for i in range(10))
    stream, reader = sse_background(
        "POST", alice.stream_url(fault_stack.web_urls[0]), headers=alice.headers,
        json_body={"message": "q " + fake({"text": answer, "chunk_size": 3, "delay_ms": 100})},
    )  # fmt: skip
    poll(lambda: "text-delta" in stream.types, timeout=60, what="the turn streaming")
    # when: the database stays down for longer than the end-of-turn write is retried
    fault_stack.pg.stop()
    try:
        reader.join(timeout=120)
        # then: the client is told the answer could not be saved yet, and the stream ends
        assert not reader.is_alive()
        assert stream.failure is None
        assert stream.text() == answer
        assert stream.types[-2:] == ["error", "finish"]
        assert stream.events[-2][1]["errorText"] == ANSWER_NOT_SAVED_TEXT
        assert stream.done is True
    finally:
        fault_stack.pg.start()
    # and once the database is back the answer is recovered from the turn's stream, once
    poll(
        lambda: [c for r, k, c in fault_stack.transcript(alice.session) if r == "assistant" and k == "message"],
        timeout=90,
        what="the answer recovered",
    )
    assistant = [(k, c) for r, k, c in fault_stack.transcript(alice.session) if r == "assistant"]
    assert [c for k, c in assistant if k == "message"] == [answer]
    assert sum((c or "").count(answer) for _, c in assistant) == 1
    poll(functools.partial(_settled, fault_stack, alice.session), timeout=60, what="the turn record settled")
