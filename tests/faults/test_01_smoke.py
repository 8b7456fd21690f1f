"""The layout is up: a turn through each web process on the production profile."""

from __future__ import annotations

import httpx
import pytest

from tests.faults.sse import Stream, fake, sse_read
from tests.faults.stack import FaultStack

pytestmark = [pytest.mark.timeout(600)]


def test_each_web_process_answers_a_turn(fault_stack: FaultStack) -> None:
    (alice,) = fault_stack.persons_create(1)
    for web in fault_stack.web_urls:
        health = httpx.get(f"{web}/healthz", timeout=10)
        assert health.status_code == 200
        stream = sse_read(
            "POST", alice.stream_url(web), headers=alice.headers,
            json_body={"message": "hi " + fake({"text": f"hello from {web}"})}, into=Stream(),
        )  # fmt: skip
        assert stream.failure is None
        assert stream.status == 200
        assert stream.text() == f"hello from {web}"
        assert stream.types[-1] == "finish"
        assert "error" not in stream.types
    assert [row[2] for row in fault_stack.transcript(alice.session) if row[0] == "assistant"] == [
        f"hello from {web}" for web in fault_stack.web_urls
    ]
    assert fault_stack.outcomes(alice.session) == ["completed", "completed"]
