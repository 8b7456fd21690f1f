"""Message persistence (append-only saves, idempotent user appends) and title generation."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.db import transaction

from chat.errors import SessionNotFound
from chat.models import ChatMessage, ChatSession
from chat.services.messages import messages_save_new
from chat.services.titles import clean_title, session_title_set_if_empty
from chat.tasks import generate_title
from copilot_site.testing.llm_script import FakeLLMServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import message_append_user
from tests.factories import link_rows


@pytest.fixture
def session(alice: Any) -> ChatSession:
    return ChatSession.objects.create(user=alice)


def contents(session: ChatSession) -> list[tuple[int, str, str | None]]:
    return list(
        ChatMessage.objects.filter(session=session).order_by("sequence").values_list("sequence", "role", "content")
    )


# ---------------------------------------------------------------- idempotent append


def test_same_client_message_id_twice_creates_one_row(session: ChatSession) -> None:
    # when
    first = message_append_user(session_id=session.pk, content="hello", client_message_id="c-1")
    second = message_append_user(session_id=session.pk, content="hello again", client_message_id="c-1")
    # then
    assert first is not None
    assert (first.sequence, first.client_message_id) == (0, "c-1")
    assert second is None
    assert contents(session) == [(0, "user", "hello")]


def test_a_retry_before_any_reply_is_a_duplicate(session: ChatSession) -> None:
    # given
    message_append_user(session_id=session.pk, content="a")
    message_append_user(session_id=session.pk, content="b")
    # when
    again = message_append_user(session_id=session.pk, content="a")
    # then
    assert again is None
    assert contents(session) == [(0, "user", "a"), (1, "user", "b")]


def test_yes_reply_yes_is_accepted(session: ChatSession) -> None:
    # given
    message_append_user(session_id=session.pk, content="yes")
    ChatMessage.objects.create(session=session, sequence=1, role="assistant", content="Sure?")
    link_rows(session)
    # when
    again = message_append_user(session_id=session.pk, content="yes")
    # then
    assert again is not None
    assert contents(session) == [(0, "user", "yes"), (1, "assistant", "Sure?"), (2, "user", "yes")]


def test_append_checks_ownership(session: ChatSession, charlie: Any) -> None:
    with pytest.raises(SessionNotFound):
        message_append_user(session_id=session.pk, content="x", user=charlie)
    with pytest.raises(SessionNotFound):
        message_append_user(session_id="00000000-0000-0000-0000-000000000000", content="x")
    assert contents(session) == []


# ---------------------------------------------------------------- append-only saves


def test_save_inserts_only_new_rows_in_order_with_next_sequences(session: ChatSession) -> None:
    # given: two stored rows, one of them pruned from memory
    kept = ChatMessage.objects.create(session=session, sequence=0, role="user", content="q")
    ChatMessage.objects.create(session=session, sequence=1, role="assistant", content="orphan")
    working = [kept]
    working += [ChatMessage(role="assistant", content="one"), ChatMessage(role="tool", content="two", tool_call_id="t")]
    # when
    inserted = messages_save_new(session_id=session.pk, messages=working)
    again = messages_save_new(session_id=session.pk, messages=working)
    # then
    assert [row.sequence for row in inserted] == [2, 3]
    assert [row.sequence for row in working] == [0, 2, 3]
    assert again == []
    assert contents(session) == [
        (0, "user", "q"),
        (1, "assistant", "orphan"),
        (2, "assistant", "one"),
        (3, "tool", "two"),
    ]


def test_a_failed_save_leaves_rows_unsaved(session: ChatSession) -> None:
    # given
    rows = [ChatMessage(role="assistant", content="x")]
    # when
    with (
        mock.patch("copilot_site.core.sql.insert", side_effect=RuntimeError("disk full")),
        pytest.raises(RuntimeError),
    ):
        messages_save_new(session_id=session.pk, messages=rows)
    # then
    assert (rows[0].sequence, rows[0].pk) == (None, None)
    assert messages_save_new(session_id=session.pk, messages=rows)[0].sequence == 0


# ---------------------------------------------------------------- titles


@pytest.mark.django_db(transaction=True)
def test_the_title_task_is_enqueued_once_after_the_first_user_message_commits(
    session: ChatSession, title_task_delay: mock.MagicMock
) -> None:
    # when: the first user message is saved inside a transaction
    with transaction.atomic():
        message_append_user(session_id=session.pk, content="plan a trip")
        # then: nothing is enqueued before the commit
        title_task_delay.assert_not_called()
    title_task_delay.assert_called_once_with(str(session.pk))
    # when: a reply and a second user message follow
    messages_save_new(session_id=session.pk, messages=[ChatMessage(role="assistant", content="sure")])
    message_append_user(session_id=session.pk, content="to lisbon")
    # then: still the one enqueue
    title_task_delay.assert_called_once_with(str(session.pk))


@pytest.mark.django_db(transaction=True)
def test_the_first_user_row_saved_as_dispatch_saves_it_enqueues_the_title_on_commit(
    session: ChatSession, title_task_delay: mock.MagicMock
) -> None:
    # when
    with transaction.atomic():
        messages_save_new(session_id=session.pk, messages=[ChatMessage(role="user", content="hello")])
        title_task_delay.assert_not_called()
    # then
    title_task_delay.assert_called_once_with(str(session.pk))


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_first_message_enqueues_no_title(session: ChatSession, title_task_delay: mock.MagicMock) -> None:
    def save_then_fail() -> None:
        with transaction.atomic():
            message_append_user(session_id=session.pk, content="plan a trip")
            raise RuntimeError("rolled back")

    # when
    with pytest.raises(RuntimeError):
        save_then_fail()
    # then
    title_task_delay.assert_not_called()
    assert contents(session) == []


@pytest.mark.django_db(transaction=True)
def test_a_titled_session_gets_no_title_task(alice: Any, title_task_delay: mock.MagicMock) -> None:
    # given
    titled = ChatSession.objects.create(user=alice, title="Chosen by the user")
    # when
    message_append_user(session_id=titled.pk, content="hello")
    messages_save_new(session_id=titled.pk, messages=[ChatMessage(role="user", content="again")])
    # then
    title_task_delay.assert_not_called()


@pytest.mark.django_db(transaction=True)
def test_a_first_row_that_is_not_a_user_message_enqueues_no_title(
    session: ChatSession, title_task_delay: mock.MagicMock
) -> None:
    # when
    messages_save_new(session_id=session.pk, messages=[ChatMessage(role="assistant", content="notice")])
    # then
    title_task_delay.assert_not_called()


def test_title_task_sets_a_title_once(llm: FakeLLMServer, session: ChatSession) -> None:
    # given
    ChatMessage.objects.create(session=session, sequence=0, role="user", content="plan a trip to lisbon please")
    # when
    generate_title(str(session.pk))
    session.refresh_from_db()
    first_title = session.title
    ChatMessage.objects.filter(session=session).update(content="something else entirely")
    generate_title(str(session.pk))
    # then
    session.refresh_from_db()
    assert first_title == "Plan A Trip To Lisbon Please"
    assert session.title == first_title
    assert len(llm.requests) == 1  # the second run saw a title and asked nothing
    body = llm.requests[0]["body"]
    assert body["model"] == "openai/gpt-4o-mini"
    assert "stream" not in body
    assert contents(session) == [(0, "user", "something else entirely")]


def test_title_is_never_written_over_one_set_meanwhile(session: ChatSession) -> None:
    # given
    session.title = "Chosen by the user"
    session.save()
    # when
    written = session_title_set_if_empty(session_id=session.pk, title="Generated")
    # then
    session.refresh_from_db()
    assert (written, session.title) == (False, "Chosen by the user")


def test_title_failure_is_logged_and_swallowed(llm: FakeLLMServer, session: ChatSession, caplog: Any) -> None:
    # given
    ChatMessage.objects.create(session=session, sequence=0, role="user", content=fake({"http_status": 500}))
    # when
    generate_title(str(session.pk))
    # then
    session.refresh_from_db()
    assert session.title is None
    assert f"Title generation failed for session {session.pk}" in caplog.text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('  "Trip to Lisbon"  ', "Trip to Lisbon"),
        ("Multi\nline   title", "Multi line title"),
        ("x" * 120, "x" * 80),
        ("   ", ""),
    ],
)
def test_clean_title(raw: str, expected: str) -> None:
    assert clean_title(raw) == expected
