"""Each class of turn failure reaches the user as a plain sentence with its code in
`data-error`; the exception's own text goes to the logs, never to the stream or the transcript."""

from __future__ import annotations

import logging

import pytest

from chat.engine.failures import FAILURE_TEXTS
from chat.models import ChatSession
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import error_row, run, shape, stored

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]

DROPPED = "The model provider closed the connection before finishing. Try again."
RAW_DROP = "peer closed connection without sending complete message body"


@pytest.mark.asyncio
async def test_a_dropped_upstream_connection_reads_as_a_plain_sentence(
    llm: FakeLLMServer, session: ChatSession, caplog: pytest.LogCaptureFixture
) -> None:
    # given: the provider drops the connection after one chunk
    message = fake({"text": "abcdefgh", "error_after_chunks": 1, "error_mode": "disconnect"})
    # when
    with caplog.at_level(logging.WARNING, logger="chat.engine.turn"):
        events = await run(session, message)
    # then
    assert shape(events)[-3:] == [("data-error", "provider_disconnected"), ("error", DROPPED), ("finish",)]
    assert await stored(session) == [("user", message), ("assistant", "abcd"), error_row(DROPPED)]
    wire = repr([e.to_wire() for e in events]) + repr(await stored(session))
    assert RAW_DROP not in wire and "incomplete chunked read" not in wire
    failures = [r for r in caplog.records if r.name == "chat.engine.turn" and "Turn failed" in r.getMessage()]
    assert len(failures) == 1
    assert "(provider_disconnected)" in failures[0].getMessage()
    assert RAW_DROP in failures[0].getMessage()


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ({"http_status": 429, "error_message": "slow down, org-123"}, "provider_rate_limited"),
        ({"http_status": 401, "error_message": "bad key sk-live-xyz"}, "provider_auth"),
        ({"http_status": 403, "error_message": "forbidden for org-123"}, "provider_auth"),
        ({"http_status": 500, "error_message": "upstream down at node-7"}, "provider_unavailable"),
        ({"http_status": 529, "error_message": "overloaded node-7"}, "provider_unavailable"),
        ({"http_status": 400, "error_message": "context too long: 999999 tokens"}, "provider_rejected"),
        ({"text": "abcdefgh", "error_after_chunks": 1, "error_message": "internal shard 42 failed"}, "llm_error"),
    ],
)
@pytest.mark.asyncio
async def test_each_provider_failure_class_has_its_code_and_sentence(
    llm: FakeLLMServer,
    session: ChatSession,
    caplog: pytest.LogCaptureFixture,
    script: dict[str, object],
    code: str,
) -> None:
    # when
    with caplog.at_level(logging.WARNING, logger="chat.engine.turn"):
        events = await run(session, fake(script))
    # then
    assert shape(events)[-3:] == [("data-error", code), ("error", FAILURE_TEXTS[code]), ("finish",)]
    assert (await stored(session))[-1] == error_row(FAILURE_TEXTS[code])
    raw = str(script["error_message"])
    written = [row for row in await stored(session) if row[0] != "user"]  # the user row holds the script
    assert raw not in repr([e.to_wire() for e in events]) + repr(written)
    logged = [
        r.getMessage() for r in caplog.records if r.name == "chat.engine.turn" and "Turn failed" in r.getMessage()
    ]
    assert len(logged) == 1
    assert raw in logged[0]
