"""More faults on the production layout: a worker's SIGTERM, a worker killed under a burst,
the upstream dropping mid-answer, and Redis coming back empty under users with spend."""

from __future__ import annotations

import functools
import os
import signal
import time

import httpx
import pytest

from tests.faults.sse import Stream, fake, sse_background, sse_read
from tests.faults.stack import FaultStack, poll
from tests.faults.test_03_worker_killed import KILLED_NOTICE

pytestmark = [pytest.mark.timeout(900)]

TOKENS = {"prompt_tokens": 10, "completion_tokens": 2}
DROPPED = "The model provider closed the connection before finishing. Try again."


def test_a_worker_stopped_with_sigterm_finishes_its_turn_first(fault_stack: FaultStack) -> None:
    # given: a turn streaming on one of the two workers
    (alice,) = fault_stack.persons_create(1)
    received_before = fault_stack.turns_received_all()
    answer = "".join(f"s{i} " for i in range(40))
    message = "go " + fake({"text": answer, "chunk_size": 4, "delay_ms": 50})
    stream, reader = sse_background(
        "POST", alice.stream_url(fault_stack.web_urls[0]), headers=alice.headers, json_body={"message": message}
    )
    poll(lambda: stream.types.count("text-delta") >= 3, timeout=60, what="the turn streaming")
    worker = poll(lambda: fault_stack.worker_running(received_before), timeout=10, what="the worker of the turn")
    # when: the worker is asked to stop (a deploy, a scale-down)
    os.killpg(worker.process.pid, signal.SIGTERM)
    reader.join(timeout=90)
    # then: it finished the turn (a warm shutdown), whole and saved, and then exited
    assert not reader.is_alive()
    assert stream.failure is None
    assert stream.text() == answer
    assert "error" not in stream.types
    assert stream.types[-1] == "finish"
    poll(lambda: worker.process.poll() is not None, timeout=60, what="the worker exiting")
    fault_stack.workers = [(m, n) for m, n in fault_stack.workers if m is not worker]
    poll(lambda: fault_stack.outcomes(alice.session) == ["completed"], timeout=30, what="the turn recorded")
    assert [(role, content) for role, _, content in fault_stack.transcript(alice.session)] == [
        ("user", message),
        ("assistant", answer),
    ]
    # and the next turn runs on the worker still there
    second = sse_read(
        "POST", alice.stream_url(fault_stack.web_urls[1]), headers=alice.headers,
        json_body={"message": "more " + fake({"text": "after the deploy"})}, into=Stream(),
    )  # fmt: skip
    assert (second.status, second.text(), second.types[-1]) == (200, "after the deploy", "finish")
    fault_stack.worker_start()


def test_a_worker_killed_under_a_burst_strands_no_turn(fault_stack: FaultStack) -> None:
    # given: more turns at once than the two workers run (4 threads each): some run on
    # each worker, and the rest wait, some of them reserved by a worker
    people = fault_stack.persons_create(12)
    answer = "".join(f"b{i} " for i in range(60))
    message = "burst " + fake({"text": answer, "chunk_size": 4, "delay_ms": 60})
    received_before = fault_stack.turns_received_all()
    streams = [
        sse_background(
            "POST", p.stream_url(fault_stack.web_urls[i % 2]), headers=p.headers, json_body={"message": message}
        )
        for i, p in enumerate(people)
    ]
    poll(lambda: sum(s.types.count("text-delta") >= 3 for s, _ in streams) >= 4, timeout=60, what="turns streaming")
    doomed = poll(lambda: fault_stack.worker_running(received_before), timeout=10, what="a busy worker")
    # when: one worker dies without any cleanup
    fault_stack.worker_kill(doomed)
    killed_at = time.monotonic()
    for _, reader in streams:
        reader.join(timeout=max(1.0, killed_at + 120 - time.monotonic()))
    # then: within 30 s of the kill no turn was still waiting or running unseen: each one
    # either completed whole (those the dead worker had not started were redelivered) or
    # ended with the killed-worker notice, every stream ended, and no turn ran twice
    assert not any(reader.is_alive() for _, reader in streams)
    finished_by = [s.ended_at - killed_at for s, _ in streams if s.ended_at is not None]
    completed = [s for s, _ in streams if "error" not in s.types]
    failed = [s for s, _ in streams if "error" in s.types]
    assert [s.failure for s, _ in streams] == [None] * 12
    assert all(s.text() == answer and s.types[-1] == "finish" for s in completed)
    assert all(s.events[-2][1] == KILLED_NOTICE and s.types[-1] == "finish" for s in failed)
    assert 1 <= len(failed) <= 4  # at most the dead worker's four threads
    assert max(finished_by) <= 30 + 60 * 0.06 * 4  # 30 s, plus the answer of a turn redelivered last
    outcomes = [fault_stack.outcomes(p.session) for p in people]
    assert sorted(o for per in outcomes for o in per) == sorted(
        ["completed"] * len(completed) + ["failed"] * len(failed)
    )
    for person in people:
        rows = fault_stack.transcript(person.session)
        assert [content for role, _, content in rows if role == "user"] == [message]
    fault_stack.worker_start()


def test_the_upstream_dropping_mid_answer_keeps_the_text_and_says_so_plainly(fault_stack: FaultStack) -> None:
    # given
    (alice,) = fault_stack.persons_create(1)
    message = "drop " + fake(
        {"text": "abcdefghijkl", "chunk_size": 4, "error_after_chunks": 2, "error_mode": "disconnect"}
    )
    # when: the model provider closes the connection after two chunks
    stream = sse_read(
        "POST", alice.stream_url(fault_stack.web_urls[0]), headers=alice.headers,
        json_body={"message": message}, into=Stream(),
    )  # fmt: skip
    # then: the user reads a plain sentence, and the text they saw is kept
    assert stream.status == 200
    assert stream.text() == "abcdefgh"
    assert stream.types[-2:] == ["error", "finish"]
    assert stream.events[-2][1] == {"type": "error", "errorText": DROPPED}
    poll(lambda: fault_stack.outcomes(alice.session) == ["failed"], timeout=30, what="the turn recorded")
    assert fault_stack.transcript(alice.session) == [
        ("user", "message", message),
        ("assistant", "message", "abcdefgh"),
        ("assistant", "error_notice", DROPPED),
    ]


def test_spend_survives_redis_coming_back_empty(fault_stack: FaultStack) -> None:
    # given: two users who spent different amounts today
    alice, bob = fault_stack.persons_create(2)
    for person, cost in ((alice, 0.004), (bob, 0.0125)):
        done = sse_read(
            "POST", person.stream_url(fault_stack.web_urls[0]), headers=person.headers,
            json_body={"message": "spend " + fake({"text": "ok", "usage": {**TOKENS, "cost": cost}})},
            into=Stream(),
        )  # fmt: skip
        assert done.types[-1] == "finish"
        assert "error" not in done.types
    before = {p.key: _usage(fault_stack.web_urls[0], p.headers) for p in (alice, bob)}
    alice_before, bob_before = before[alice.key], before[bob.key]
    assert alice_before is not None and bob_before is not None
    assert 0 < alice_before[0] < bob_before[0]
    # when: Redis restarts and keeps nothing
    fault_stack.redis.restart()
    # then: each user's usage reads the same as before, through either web process
    after = {
        p.key: poll(functools.partial(_usage, fault_stack.web_urls[1], p.headers), timeout=30, what="usage")
        for p in (alice, bob)
    }
    assert after == before


def _usage(web: str, headers: dict[str, str]) -> tuple[float, float] | None:
    """The user's daily and weekly percent used, or None while the web process cannot answer."""
    try:
        response = httpx.get(f"{web}/api/chat/usage", headers=headers, timeout=10)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    body = response.json()
    return float(body["daily"]["percent_used"]), float(body["weekly"]["percent_used"])
