"""Redis restarted mid-stream: the SSE client is never left hanging."""

from __future__ import annotations

import functools
import time

import pytest

from tests.faults.sse import Stream, fake, sse_background, sse_read
from tests.faults.stack import FaultStack, Person, poll

pytestmark = [pytest.mark.timeout(600)]

END_WITHIN_S = 10.0


def test_a_redis_restart_ends_or_resumes_the_stream_within_ten_seconds(fault_stack: FaultStack) -> None:
    # given: a turn streaming through web 2
    (alice,) = fault_stack.persons_create(1)
    web = fault_stack.web_urls[1]
    answer = "".join(f"r{i} " for i in range(100))
    message = "go " + fake({"text": answer, "chunk_size": 4, "delay_ms": 100})
    stream, reader = sse_background(
        "POST", alice.stream_url(web), headers=alice.headers, json_body={"message": message}
    )
    poll(lambda: stream.types.count("text-delta") >= 5, timeout=60, what="the turn streaming")
    # when: Redis goes away and comes back empty
    fault_stack.redis.restart()
    restarted = time.monotonic()
    reader.join(timeout=END_WITHIN_S + 30)
    # then: within the bound the stream went on (or ended), and it never went quiet for longer
    assert not reader.is_alive()
    assert stream.failure is None
    assert stream.ended_at is not None
    after_restart = sorted(t for t in [*stream.arrived, *stream.comments, stream.ended_at] if t > restarted)
    gaps = [b - a for a, b in zip([restarted, *after_restart], after_restart, strict=False)]
    assert gaps
    assert max(gaps) <= END_WITHIN_S
    assert stream.types[-1] == "finish"
    assert stream.done is True
    if "error" in stream.types:
        assert stream.types[-2:] == ["error", "finish"]
    assert answer.startswith(stream.text()[:20])
    # and the layout takes a new turn once Redis is back
    after = poll(functools.partial(_new_turn, fault_stack, alice), timeout=90, interval=1, what="a new turn")
    assert after.text() == "back again"
    assert "error" not in after.types
    if "error" not in stream.types:
        # A stream that went on lost nothing: the worker wrote what Redis lost again
        assert stream.text() == answer


def _new_turn(stack: FaultStack, person: Person) -> Stream | None:
    result = sse_read(
        "POST", person.stream_url(stack.web_urls[0]), headers=person.headers,
        json_body={"message": "after " + fake({"text": "back again"})}, into=Stream(),
    )  # fmt: skip
    return result if result.status == 200 and result.types[-1:] == ["finish"] else None
