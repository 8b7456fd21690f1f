"""Content negotiation of `POST`/`GET …/stream` with clients nobody here wrote: curl, httpx-sse,
q-value lists, no `Accept` at all; JSON only for a client that does not accept the stream."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from chat.models import ChatMessage
from chat.turns.registry import turn_meta_get
from chat.turns.sse import accept_choice
from tests.chat.turns.helpers import Person, fake, person, read_sse, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TURN_TYPES = ["start", "start-step", "text-start", "text-delta", "text-end", "finish-step", "data-usage", "finish"]


def _url(base: str, p: Person) -> str:
    return f"{base}/api/chat/sessions/{p.session.id}/stream"


def _idle(p: Person) -> bool:
    meta = turn_meta_get(p.session.id)
    return meta is None or not meta.is_running


def _sse_events(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize(
    ("header", "choice"),
    [
        (None, "stream"),
        ("", "stream"),
        ("text/event-stream", "stream"),
        ("*/*", "stream"),
        ("text/*", "stream"),
        ("text/event-stream;q=0.9, application/json;q=0.1", "stream"),
        ("application/json;q=1, text/event-stream;q=0.2", "stream"),
        ("application/json", "json"),
        ("application/json, text/event-stream;q=0", "json"),
        ("application/*", "json"),
        ("*/*;q=0, application/json", "json"),
        ("text/html", None),
        ("text/event-stream;q=0", None),
        ("application/json;q=oops", None),
    ],
)
def test_accept_choice(header: str | None, choice: str | None) -> None:
    assert accept_choice(header) == choice


def test_curl_with_accept_event_stream_streams_a_whole_turn(stack: str) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed: the curl client test needs it on PATH")
    alice = person("alice")
    body = json.dumps({"message": "hi " + fake({"text": "Hello from curl.", "chunk_size": 1000})})
    completed = subprocess.run(
        [curl, "-sS", "-N", "-i", "-X", "POST", _url(stack, alice), "--max-time", "60",
         "-H", "Accept: text/event-stream", "-H", "Content-Type: application/json",
         "-H", f"Authorization: Bearer {alice.key}", "--data-binary", body],
        capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip
    head, _, stream = completed.stdout.partition("\n\n")  # text mode: CRLF read as LF
    assert head.splitlines()[0].split()[1] == "200"
    assert "content-type: text/event-stream" in head.lower()
    events = _sse_events(stream)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["type"] for c in chunks] == TURN_TYPES
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "Hello from curl."


def test_httpx_sse_connect_sse_streams_a_whole_turn(stack: str) -> None:
    alice = person("alice")
    body = {"message": "hi " + fake({"text": "Hello via httpx-sse.", "chunk_size": 4})}
    with (
        httpx.Client(headers=alice.headers, timeout=60) as client,
        connect_sse(client, "POST", _url(stack, alice), json=body) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.request.headers["accept"] == "text/event-stream"
        data = [event.data for event in source.iter_sse()]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["type"] == "start" and chunks[-1]["type"] == "finish"
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "Hello via httpx-sse."


@pytest.mark.parametrize(
    "headers",
    [{"Accept": "text/event-stream;q=0.9, application/json;q=0.1"}, {}],
    ids=["q-values", "no-accept"],
)
def test_q_value_lists_and_no_accept_get_the_stream(stack: str, headers: dict[str, str]) -> None:
    alice = person("alice")
    body = json.dumps({"message": "hi " + fake({"text": "streamed", "chunk_size": 1000})}).encode()
    request_headers = {**alice.headers, **headers, "Content-Type": "application/json"}
    with httpx.Client(timeout=60) as client:
        request = client.build_request("POST", _url(stack, alice), headers=request_headers, content=body)
        if not headers:
            del request.headers["accept"]  # httpx adds `*/*` by default
        response = client.send(request)
    assert ("accept" in response.request.headers) == bool(headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = _sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert [json.loads(e)["type"] for e in events[:-1]] == TURN_TYPES


def test_get_stream_with_accept_event_stream_reattaches(stack: str) -> None:
    alice = person("alice")
    script = fake({"text": "slow words " * 10, "chunk_size": 5, "delay_ms": 40})
    first: list[Any] = []
    reader = threading.Thread(
        target=lambda: first.append(
            read_sse("POST", _url(stack, alice), headers=alice.headers, json_body={"message": "go " + script})
        )
    )
    reader.start()
    wait_until(lambda: not _idle(alice))
    again = read_sse("GET", _url(stack, alice), headers={**alice.headers, "Accept": "text/event-stream"})
    reader.join(timeout=60)
    assert again.status == 200
    assert again.done is True
    assert again.text() == first[0].text() == "slow words " * 10


def test_a_client_accepting_neither_stream_nor_json_is_406_and_sends_nothing(stack: str) -> None:
    alice = person("alice")
    response = httpx.post(
        _url(stack, alice), headers={**alice.headers, "Accept": "text/html"}, json={"message": "hi"}, timeout=10
    )
    assert response.status_code == 406
    assert response.json() == {"detail": "Could not satisfy the request Accept header."}
    assert ChatMessage.objects.filter(session=alice.session).count() == 0


def test_errors_stay_json_for_a_stream_client(stack: str) -> None:
    alice = person("alice")
    response = httpx.post(
        _url(stack, alice), headers={**alice.headers, "Accept": "text/event-stream"}, json={"message": " "}, timeout=10
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": ["Message must not be blank."]}


def test_accept_json_on_a_queued_followup_still_gets_202_json(stack: str) -> None:
    alice = person("alice")
    script = fake({"text": "long answer " * 10, "chunk_size": 4, "delay_ms": 40})
    first: list[Any] = []
    reader = threading.Thread(
        target=lambda: first.append(
            read_sse("POST", _url(stack, alice), headers=alice.headers, json_body={"message": "go " + script})
        )
    )
    reader.start()
    wait_until(lambda: not _idle(alice))
    queued = httpx.post(
        _url(stack, alice),
        headers={**alice.headers, "Accept": "application/json"},
        json={"message": "and then?", "delivery": "next_turn"},
        timeout=10,
    )
    reader.join(timeout=60)
    assert queued.status_code == 202
    assert queued.headers["content-type"] == "application/json"
    assert queued.json() == {"buffer_length": 1, "max_buffer_length": 10, "turn_in_flight": True}
    assert first[0].text() == "long answer " * 10
    wait_until(lambda: _idle(alice) and ChatMessage.objects.filter(session=alice.session, role="user").count() == 2)
