"""copilot_site.core.sql: the hand-written statements of the turn-end path, on the suite's
database (SQLite by default, PostgreSQL in CI), and the statements that path now issues."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import ChatMessage, ChatSession, TurnUsage
from chat.services.messages import messages_save_new
from chat.services.usage import turn_usage_finish
from copilot_site.core import sql
from ratelimits.models import DailySpend
from ratelimits.services import usage_record


@pytest.fixture
def session(alice: Any) -> ChatSession:
    return ChatSession.objects.create(user=alice, title="t")


def _statements(queries: CaptureQueriesContext) -> list[str]:
    """The statements run, first word(s) only, without the test's savepoints."""
    words = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    return [w for w in words if w not in ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT")]


def test_update_sets_values_and_adds_amounts_on_the_matching_row_only(session: ChatSession, alice: Any) -> None:
    # given
    other = ChatSession.objects.create(user=alice, title="other")
    ChatSession.objects.filter(pk=session.pk).update(total_prompt_tokens=5)
    # when
    count = sql.update(
        ChatSession,
        where={"id": session.pk},
        values={"title": "renamed"},
        add={"total_prompt_tokens": 7, "total_cost_microdollars": 3},
    )
    # then
    assert count == 1
    session.refresh_from_db()
    other.refresh_from_db()
    assert (session.title, session.total_prompt_tokens, session.total_cost_microdollars) == ("renamed", 12, 3)
    assert (other.title, other.total_prompt_tokens, other.total_cost_microdollars) == ("other", 0, 0)


def test_update_of_no_row_reports_zero(db: Any) -> None:
    assert sql.update(ChatSession, where={"id": uuid.uuid4()}, values={"title": "x"}) == 0


def test_max_value_is_none_without_rows_and_the_top_with_them(session: ChatSession) -> None:
    assert sql.max_value(ChatMessage, "sequence", where={"session": session.pk}) is None
    ChatMessage.objects.create(session=session, sequence=0, role="user", content="a")
    ChatMessage.objects.create(session=session, sequence=4, role="user", content="b")
    assert sql.max_value(ChatMessage, "sequence", where={"session": session.pk}) == 4


def test_insert_stores_every_field_and_sets_keys_in_order(session: ChatSession) -> None:
    # given
    turn = uuid.uuid4()
    rows = [
        ChatMessage(session=session, sequence=0, role="assistant", content="hi", tool_calls=[{"id": "c1"}]),
        ChatMessage(session=session, sequence=1, role="tool", content=None, tool_call_id="c1", turn_id=turn),
    ]
    before = timezone.now()
    # when
    sql.insert(rows)
    # then
    assert [row._state.adding for row in rows] == [False, False]
    stored = {row.pk: row for row in ChatMessage.objects.filter(session=session)}
    assert [stored[row.pk].sequence for row in rows] == [0, 1]
    first, second = stored[rows[0].pk], stored[rows[1].pk]
    assert (first.content, first.tool_calls, first.turn_id, first.name) == ("hi", [{"id": "c1"}], None, "")
    assert (second.content, second.tool_call_id, second.turn_id) == (None, "c1", turn)
    assert first.created_at >= before
    assert rows[0].created_at == first.created_at


def test_insert_or_add_inserts_then_adds_to_the_same_row(alice: Any, bob: Any) -> None:
    # when
    sql.insert_or_add(
        DailySpend(user=alice, date=date(2026, 4, 3), microdollars=100, turn_count=1),
        unique=["user", "date"],
        add=["microdollars", "turn_count"],
    )
    sql.insert_or_add(
        DailySpend(user=alice, date=date(2026, 4, 3), microdollars=250, turn_count=1),
        unique=["user", "date"],
        add=["microdollars", "turn_count"],
    )
    sql.insert_or_add(
        DailySpend(user=bob, date=date(2026, 4, 3), microdollars=9, turn_count=1),
        unique=["user", "date"],
        add=["microdollars", "turn_count"],
    )
    # then
    rows = DailySpend.objects.order_by("user__username").values_list("user__username", "microdollars", "turn_count")
    assert list(rows) == [("alice", 350, 2), ("bob", 9, 1)]


def test_turn_end_writes_are_six_statements(session: ChatSession, alice: Any) -> None:
    """The rows, the usage and the spend history of a paid turn: what the worker runs."""
    # given
    turn = uuid.uuid4()
    TurnUsage.objects.create(turn_id=turn, session=session, user=alice)
    rows = [ChatMessage(role="assistant", content="answer", turn_id=turn)]
    # when
    with CaptureQueriesContext(connection) as queries:
        messages_save_new(session_id=session.pk, messages=rows)
        turn_usage_finish(
            turn_id=turn,
            session_id=session.pk,
            user=None,
            outcome=TurnUsage.Outcome.COMPLETED,
            prompt_tokens=10,
            completion_tokens=4,
            cost_microdollars=1234,
            cost_source=TurnUsage.CostSource.REPORTED,
        )
    # then
    # The rows: lock, the last sequence (none: no leaf to read), the insert, the new leaf.
    assert _statements(queries) == ["UPDATE", "SELECT", "INSERT", "UPDATE", "UPDATE", "UPDATE"]
    usage = TurnUsage.objects.get(turn_id=turn)
    assert (usage.outcome, usage.total_tokens, usage.cost_microdollars) == ("completed", 14, 1234)
    assert usage.finished_at is not None
    session.refresh_from_db()
    assert (session.total_prompt_tokens, session.total_completion_tokens, session.total_cost_microdollars) == (
        10,
        4,
        1234,
    )
    assert list(ChatMessage.objects.filter(session=session).values_list("sequence", "content")) == [(0, "answer")]


def test_spend_history_is_one_statement(alice: Any) -> None:
    with CaptureQueriesContext(connection) as queries:
        usage_record(user=alice, microdollars=500)
    assert _statements(queries) == ["INSERT"]
    assert DailySpend.objects.get(user=alice).microdollars == 500
