"""The end-of-turn write is retried while the database is unavailable; when it never
succeeds, the stream says the answer could not be saved and the text is recovered later
from the turn's Redis stream, once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from chat.engine import transcript
from chat.models import ChatMessage, ChatSession, TurnUsage
from chat.services import messages as message_services
from chat.services.turns import (
    ANSWER_NOT_SAVED_TEXT,
    UNSAVED_TURNS_KEY,
    turn_text_save,
    turns_recover_unsaved,
)
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import run, shape, stored, turn_usage
from tests.chat.turns.helpers import publish_chunk

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]

TERMINATED = OperationalError("terminating connection due to administrator command")


@pytest.fixture(autouse=True)
def _quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcript, "END_WRITE_BACKOFF_S", (0.01, 0.02, 0.04))


@pytest.fixture
def closes() -> Iterator[mock.MagicMock]:
    original = BaseDatabaseWrapper.close
    with mock.patch.object(BaseDatabaseWrapper, "close", autospec=True, side_effect=original) as close:
        yield close


@pytest.fixture
def enqueue() -> Iterator[mock.MagicMock]:
    with mock.patch("chat.services.turns._recovery_enqueue") as enqueue:
        yield enqueue


def _failing_save(failures: int | None) -> Any:
    """`messages_save_new` that raises `failures` times (always with None), then saves."""
    original = message_services.messages_save_new
    calls = {"n": 0}

    def save(**kwargs: Any) -> Any:
        calls["n"] += 1
        if failures is None or calls["n"] <= failures:
            raise TERMINATED
        return original(**kwargs)

    return mock.patch.object(message_services, "messages_save_new", side_effect=save)


@pytest.mark.asyncio
async def test_an_end_write_that_fails_twice_is_retried_and_the_transcript_is_complete(
    llm: FakeLLMServer, session: ChatSession, closes: mock.MagicMock, enqueue: mock.MagicMock
) -> None:
    message = fake({"text": "Hello there", "chunk_size": 5})
    with _failing_save(2) as save:
        events = await run(session, message)
    assert save.call_count == 3
    assert closes.call_count >= 2  # the broken connection is closed before each new attempt
    assert shape(events)[-3:] == [("finish-step",), ("data-usage",), ("finish",)]
    assert "error" not in [kind for kind, *_ in shape(events)]
    assert await stored(session) == [("user", message), ("assistant", "Hello there")]
    usage = await turn_usage(session)
    assert usage.outcome == TurnUsage.Outcome.COMPLETED
    enqueue.assert_not_called()
    assert not redis.Redis.from_url(settings.REDIS_URL).exists(UNSAVED_TURNS_KEY)


@pytest.mark.asyncio
async def test_an_end_write_that_never_succeeds_ends_with_an_error_and_the_text_is_recovered_once(
    llm: FakeLLMServer, session: ChatSession, enqueue: mock.MagicMock
) -> None:
    # given: the database stays unavailable through every attempt of the end-of-turn write
    message = fake({"text": "Hello there", "chunk_size": 5})
    with _failing_save(None) as save:
        events = await run(session, message)
    # then: the stream says the answer could not be saved (plain text, machine code in data-error)
    assert save.call_count == len(transcript.END_WRITE_BACKOFF_S) + 1
    assert shape(events)[-4:] == [
        ("finish-step",),
        ("data-error", "answer_not_saved"),
        ("error", ANSWER_NOT_SAVED_TEXT),
        ("finish",),
    ]
    assert ANSWER_NOT_SAVED_TEXT.startswith("Your answer could not be saved.")
    assert await stored(session) == [("user", message)]
    usage = await turn_usage(session)
    assert usage.outcome == TurnUsage.Outcome.RUNNING  # nothing could be written yet
    enqueue.assert_called_once_with()
    turn_id = str(usage.turn_id)
    assert redis.Redis.from_url(settings.REDIS_URL).hgetall(UNSAVED_TURNS_KEY) == {
        turn_id.encode(): str(session.pk).encode()
    }
    # when: the database is back and the recovery runs (the worker's appender wrote the stream)
    for event in events:
        publish_chunk(turn_id, event.to_wire())
    assert await sync_to_async(turns_recover_unsaved)() == 0
    # then: the streamed text is in the transcript, the record says why, and nothing is saved twice
    assert await stored(session) == [("user", message), ("assistant", "Hello there")]
    usage = await turn_usage(session)
    assert usage.outcome == TurnUsage.Outcome.FAILED
    assert usage.error == ANSWER_NOT_SAVED_TEXT
    assert not redis.Redis.from_url(settings.REDIS_URL).exists(UNSAVED_TURNS_KEY)
    assert await sync_to_async(turns_recover_unsaved)() == 0
    again = await sync_to_async(turn_text_save)(session_id=str(session.pk), turn_id=turn_id, text="Hello there")
    assert again is False
    assert await sync_to_async(ChatMessage.objects.filter(session=session).count)() == 2


@pytest.mark.asyncio
async def test_a_recovery_while_the_database_is_still_down_waits_for_the_next_run(
    llm: FakeLLMServer, session: ChatSession, enqueue: mock.MagicMock
) -> None:
    message = fake({"text": "Hi", "chunk_size": 5})
    with _failing_save(None):
        events = await run(session, message)
    turn_id = str((await turn_usage(session)).turn_id)
    for event in events:
        publish_chunk(turn_id, event.to_wire())
    with mock.patch.object(CursorWrapper, "execute", side_effect=TERMINATED):
        assert await sync_to_async(turns_recover_unsaved)() == 1
    assert await stored(session) == [("user", message)]
    assert await sync_to_async(turns_recover_unsaved)() == 0
    assert await stored(session) == [("user", message), ("assistant", "Hi")]
