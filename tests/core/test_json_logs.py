"""X-Request-ID on every response, and `LOG_FORMAT=json` lines that say which request, user and turn."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from chat.engine.request import TurnHooks, TurnRequest
from chat.models import ChatSession
from chat.turns import runtime
from chat.turns.registry import turn_claim
from copilot_site.accounts.services import api_key_create
from copilot_site.core.logs import JsonFormatter, LogContextFilter, request_id_var, request_var, turn_id_var
from copilot_site.testing.processes import start_daphne
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.django_db(transaction=True)

GENERATED = re.compile(r"[0-9a-f]{32}")
DAPHNE_ACCESS = re.compile(r"\S+:\d+ - - \[")


@pytest.mark.parametrize("incoming", ["abc-123_X.y", "a", "0" * 64, "ELB-1.2.3-deadbeef"])
def test_a_valid_incoming_request_id_is_echoed(incoming: str) -> None:
    response = Client().get("/api/chat/sessions", HTTP_X_REQUEST_ID=incoming)
    assert response.status_code == 401
    assert response["X-Request-ID"] == incoming


@pytest.mark.parametrize("incoming", ["", "has space", "0" * 65, "<script>", "a/b", "id;drop", "é"])
def test_an_invalid_incoming_request_id_is_replaced_by_a_new_one(incoming: str) -> None:
    response = Client().get("/api/chat/sessions", HTTP_X_REQUEST_ID=incoming)
    assert GENERATED.fullmatch(response["X-Request-ID"])
    assert response["X-Request-ID"] != incoming


def test_without_an_incoming_id_each_response_gets_its_own() -> None:
    client = Client()
    ids = {client.get("/login/")["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert all(GENERATED.fullmatch(request_id) for request_id in ids)
    # once the response is closed, lines logged on this thread name no request
    assert (request_id_var.get(), request_var.get()) == (None, None)


@pytest.fixture(scope="module")
def json_server(live_env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """A real daphne with LOG_FORMAT=json; yields its base URL and the process (for its log)."""
    server, port = start_daphne({**live_env, "LOG_FORMAT": "json"}, ARTIFACTS / "logs")
    yield f"http://127.0.0.1:{port}", server
    server.stop()


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_log_line_during_an_api_request_is_json_with_request_id_and_user_id(
    json_server: tuple[str, Any], alice: Any
) -> None:
    # given
    base, server = json_server
    _, key = api_key_create(user=alice, name="logs")
    missing = uuid.uuid4()
    # when: a 404, which Django logs as a warning after the view authenticated alice
    response = httpx.get(
        f"{base}/api/chat/sessions/{missing}",
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "json-log-test-1"},
        timeout=10,
    )
    # then
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "json-log-test-1"
    deadline = time.monotonic() + 10
    while not (lines := [e for e in _json_lines(server.log()) if e.get("request_id") == "json-log-test-1"]):
        assert time.monotonic() < deadline, server.log()[-4000:]
        time.sleep(0.05)
    assert lines == [
        {
            "timestamp": lines[0]["timestamp"],
            "level": "WARNING",
            "logger": "django.request",
            "message": f"Not Found: /api/chat/sessions/{missing}",
            "request_id": "json-log-test-1",
            "user_id": alice.pk,
        }
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", lines[0]["timestamp"])
    # every line logged once Django configured logging is one JSON object; daphne's access
    # log is not logging (daphne writes it to stdout itself) and keeps its own format
    text = server.log()
    after_setup = [line for line in text[text.index("\n{") + 1 :].splitlines() if not DAPHNE_ACCESS.match(line)]
    assert after_setup
    assert all(isinstance(json.loads(line), dict) for line in after_setup if line.strip())


def test_an_anonymous_request_logs_no_user_id(json_server: tuple[str, Any]) -> None:
    base, server = json_server
    response = httpx.get(f"{base}/no-such-page-{uuid.uuid4()}", headers={"X-Request-ID": "json-log-anon"}, timeout=10)
    assert response.status_code == 404
    deadline = time.monotonic() + 10
    while not (lines := [e for e in _json_lines(server.log()) if e.get("request_id") == "json-log-anon"]):
        assert time.monotonic() < deadline, server.log()[-4000:]
        time.sleep(0.05)
    assert [(line["logger"], "user_id" in line, "turn_id" in line) for line in lines] == [
        ("django.request", False, False)
    ]


@pytest.fixture
def json_capture() -> Iterator[io.StringIO]:
    """The root logger also writes to a buffer, filtered and formatted as LOG_FORMAT=json does."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_worker_log_lines_during_a_turn_carry_turn_session_and_user(json_capture: io.StringIO, alice: Any) -> None:
    # given: a claimed turn, and an engine that logs from the loop and from a thread
    session = ChatSession.objects.create(user=alice, title="t")
    turn_id = turn_claim(session_id=session.pk, user_id=alice.pk, origin_id="x", origin_name="x")
    assert turn_id is not None
    request = TurnRequest(session_id=str(session.pk), turn_id=turn_id, user_id=alice.pk)
    engine_log = logging.getLogger("chat.engine.test")

    def engine(request: TurnRequest, hooks: TurnHooks) -> AsyncIterator[Any]:
        async def events() -> AsyncIterator[Any]:
            engine_log.info("engine on the loop")
            await sync_to_async(engine_log.info, thread_sensitive=False)("engine in a thread")
            yield {"type": "finish"}

        return events()

    # when: run as the worker does, in a task of its own
    async def main() -> runtime.TurnOutcome:
        return await asyncio.create_task(runtime.execute_turn(request, owner_token="w:1", engine=engine))

    outcome = asyncio.run(main())
    # then
    assert (outcome.ran, outcome.error) == (True, None)
    lines = {e["message"]: e for e in _json_lines(json_capture.getvalue()) if e["logger"] == "chat.engine.test"}
    expected = {"turn_id": turn_id, "session_id": str(session.pk), "user_id": alice.pk}
    for message in ("engine on the loop", "engine in a thread"):
        assert {k: lines[message].get(k) for k in expected} == expected
        assert "request_id" not in lines[message]
    assert turn_id_var.get() is None  # the turn's context stayed in its task


def test_a_stale_turn_is_dropped_with_its_ids_in_the_log_line(json_capture: io.StringIO) -> None:
    request = TurnRequest(session_id=str(uuid.uuid4()), turn_id="turn-stale", user_id=41)
    outcome = asyncio.run(runtime.execute_turn(request, owner_token="w:1"))
    assert outcome.ran is False
    lines = [e for e in _json_lines(json_capture.getvalue()) if e["logger"] == "chat.turns.runtime"]
    assert [(e["level"], e["turn_id"], e["session_id"], e["user_id"]) for e in lines] == [
        ("INFO", "turn-stale", request.session_id, 41)
    ]
    assert lines[0]["message"].startswith("Dropping stale turn turn-stale of session ")


def test_an_exception_is_one_field_of_the_same_line() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    try:
        raise ValueError("bad value")
    except ValueError:
        record.exc_info = sys.exc_info()
    LogContextFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == ("ERROR", "x", "boom now")
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: bad value")
    assert set(entry) == {"timestamp", "level", "logger", "message", "exception"}
