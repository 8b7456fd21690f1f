"""A stream resumed on the other web process, and the turn stopped through it."""

from __future__ import annotations

import httpx
import pytest

from tests.faults.sse import Stream, fake, sse_background, sse_read
from tests.faults.stack import FaultStack, poll

pytestmark = [pytest.mark.timeout(600)]


def test_resume_and_stop_through_the_other_web_process(fault_stack: FaultStack) -> None:
    # given: a slow turn started on web 1, whose client drops after three deltas
    (alice,) = fault_stack.persons_create(1)
    web1, web2 = fault_stack.web_urls
    message = "slow " + fake({"text": "a" * 400, "chunk_size": 2, "delay_ms": 80})
    first = sse_read(
        "POST", alice.stream_url(web1), headers=alice.headers, json_body={"message": message},
        into=Stream(), stop_after_deltas=3,
    )  # fmt: skip
    assert first.failure is None
    assert first.done is False
    last_id = first.events[-1][0]
    assert last_id
    # when: the client resumes on web 2 from its last event, then stops the turn through web 2
    rest, reader = sse_background("GET", alice.stream_url(web2), headers={**alice.headers, "Last-Event-ID": last_id})
    poll(lambda: rest.types.count("text-delta") >= 3, timeout=30, what="the resumed stream flowing")
    cancel = httpx.post(f"{web2}/api/chat/sessions/{alice.session}/cancel", headers=alice.headers, timeout=10)
    reader.join(timeout=30)
    # then: nothing missed, nothing repeated, and the resumed stream ends
    assert cancel.status_code == 200
    assert cancel.json() == {"cancelled": True, "reason": None}
    assert not reader.is_alive()
    assert rest.failure is None
    assert rest.status == 200
    ids = [i for i, _ in first.events] + [i for i, _ in rest.events if i]
    assert len(ids) == len(set(ids))
    seen = first.text() + rest.text()
    assert 6 < len(seen) < 400
    assert set(seen) == {"a"}
    assert rest.types[-1] == "finish"
    assert rest.done is True
    poll(lambda: fault_stack.outcomes(alice.session) == ["cancelled"], timeout=30, what="the turn cancelled")
    rows = fault_stack.transcript(alice.session)
    assert rows[0] == ("user", "message", message)
    assert [(role, kind) for role, kind, _ in rows[1:]] == [("assistant", "message"), ("assistant", "stopped")]
    saved = rows[1][2] or ""
    assert saved.startswith(seen) or seen.startswith(saved)
    assert set(saved) == {"a"}
