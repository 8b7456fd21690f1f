"""SIGKILL of the worker running a turn: the turn ends, what was streamed is kept."""

from __future__ import annotations

import pytest

from tests.faults.sse import Stream, fake, sse_background, sse_read
from tests.faults.stack import FaultStack, poll

pytestmark = [pytest.mark.timeout(600)]

KILLED_NOTICE = {
    "type": "error",
    "errorText": "The worker running this reply stopped unexpectedly. "
    "What it produced so far is saved; please try again.",
}


def test_a_killed_worker_fails_its_turn_and_keeps_the_streamed_text(fault_stack: FaultStack) -> None:
    # given: a slow turn, running on one of the two workers
    (alice,) = fault_stack.persons_create(1)
    web = fault_stack.web_urls[0]
    received_before = fault_stack.turns_received_all()
    message = "long " + fake({"text": "".join(f"k{i} " for i in range(200)), "chunk_size": 4, "delay_ms": 100})
    stream, reader = sse_background(
        "POST", alice.stream_url(web), headers=alice.headers, json_body={"message": message}
    )
    poll(lambda: stream.types.count("text-delta") >= 5, timeout=60, what="the turn streaming")
    doomed = poll(lambda: fault_stack.worker_running(received_before), timeout=10, what="the worker of the turn")
    # when: that worker dies without any cleanup
    fault_stack.worker_kill(doomed)
    reader.join(timeout=90)
    # then: the listener sees the turn fail, and the text it saw is in the transcript
    assert not reader.is_alive()
    assert stream.failure is None
    assert stream.types[-2:] == ["error", "finish"]
    assert stream.events[-2][1] == KILLED_NOTICE
    assert stream.done is True
    streamed = stream.text()
    assert 20 <= len(streamed) < len("".join(f"k{i} " for i in range(200)))
    poll(lambda: fault_stack.outcomes(alice.session) == ["failed"], timeout=60, what="the turn record failed")
    rows = fault_stack.transcript(alice.session)
    assert rows[0] == ("user", "message", message)
    assistant = [(kind, content) for role, kind, content in rows if role == "assistant"]
    assert [content for kind, content in assistant if kind == "message"] == [streamed]
    assert [kind for kind, _ in assistant] == ["message", "error_notice"]
    # and the session takes a new turn at once, on the worker still alive
    second = sse_read(
        "POST", alice.stream_url(fault_stack.web_urls[1]), headers=alice.headers,
        json_body={"message": "again " + fake({"text": "fresh answer"})}, into=Stream(),
    )  # fmt: skip
    assert second.failure is None
    assert second.text() == "fresh answer"
    assert "error" not in second.types
    assert second.types[-1] == "finish"
    assert fault_stack.outcomes(alice.session) == ["failed", "completed"]
    # the layout is whole again for the next scenario
    fault_stack.worker_start()
