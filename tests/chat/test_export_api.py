"""`GET /api/chat/sessions/{id}/export`: a real turn with a tool call, exported as Markdown and
JSON through daphne (the turn run by the real worker and the scripted LLM)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from chat.models import ChatMessage, ChatSession
from tests.chat.turns.helpers import Person, fake, person, read_sse
from tests.factories import ChatMessageFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(daphne_server: str, celery_worker: Any, fake_llm: Any) -> str:
    """daphne + a real Celery worker + the scripted LLM; the base URL."""
    fake_llm.reset()
    return daphne_server


SCRIPT = fake(
    {
        "reasoning": "I should use the calculator.",
        "tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "call_calc"}],
    },
    {"text": "6 × 7 = **42**."},
)
QUESTION = "What is 6*7? " + SCRIPT


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _when(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _turn(stack: str) -> tuple[Person, list[ChatMessage]]:
    alice = person("alice")
    ChatSession.objects.filter(pk=alice.session.pk).update(title="Multiplication")
    result = read_sse(
        "POST",
        f"{stack}/api/chat/sessions/{alice.session.id}/stream",
        headers=alice.headers,
        json_body={"message": QUESTION},
    )
    assert result.done
    rows = list(ChatMessage.objects.filter(session=alice.session).order_by("sequence"))
    assert [(r.role, r.kind) for r in rows] == [
        ("user", "message"),
        ("reasoning", "message"),
        ("assistant", "message"),
        ("tool", "message"),
        ("assistant", "message"),
    ]
    return alice, rows


def test_markdown_export_of_a_turn_with_a_tool_call(stack: str) -> None:
    # given
    alice, rows = _turn(stack)
    session = ChatSession.objects.get(pk=alice.session.pk)
    # when
    response = httpx.get(f"{stack}/api/chat/sessions/{session.pk}/export?format=md", headers=alice.headers)
    # then
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="multiplication-{str(session.pk)[:8]}.md"'
    assert response.headers["cache-control"] == "private, no-store"
    assert response.text == (
        "# Multiplication\n\n"
        f"Chat `{session.pk}`, started {_when(session.created_at)}, exported from Copilot.\n\n"
        f"## You · {_when(rows[0].created_at)}\n\n"
        f"{QUESTION}\n\n"
        f"## Copilot · {_when(rows[1].created_at)}\n\n"
        "> **Reasoning**\n>\n> I should use the calculator.\n\n"
        "**Tool call** `calculator` (`call_calc`)\n\n"
        '```json\n{\n  "expression": "6*7"\n}\n```\n\n'
        "**Tool output** `calculator` (`call_calc`)\n\n"
        '```json\n{\n  "expression": "6*7",\n  "result": 42\n}\n```\n\n'
        "6 × 7 = **42**.\n"
    )


def test_json_export_of_a_turn_with_a_tool_call(stack: str) -> None:
    # given
    alice, rows = _turn(stack)
    session = ChatSession.objects.get(pk=alice.session.pk)
    turn_id = str(rows[0].turn_id)
    # when
    response = httpx.get(f"{stack}/api/chat/sessions/{session.pk}/export?format=json", headers=alice.headers)
    # then
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert (
        response.headers["content-disposition"] == f'attachment; filename="multiplication-{str(session.pk)[:8]}.json"'
    )
    common = {"kind": "message", "turn_id": turn_id, "duration_ms": None, "tool_calls": [], "tool_result": None}
    assert response.json() == {
        "format": "copilot.chat-export",
        "version": 1,
        "session": {
            "id": str(session.pk),
            "title": "Multiplication",
            "created_at": _iso(session.created_at),
            "updated_at": _iso(session.updated_at),
        },
        "messages": [
            {**common, "sequence": 0, "role": "user", "created_at": _iso(rows[0].created_at), "text": QUESTION},
            {
                **common,
                "sequence": 1,
                "role": "reasoning",
                "created_at": _iso(rows[1].created_at),
                "text": "I should use the calculator.",
            },
            {
                **common,
                "sequence": 2,
                "role": "assistant",
                "created_at": _iso(rows[2].created_at),
                "text": "",
                "tool_calls": [{"id": "call_calc", "name": "calculator", "input": {"expression": "6*7"}}],
            },
            {
                **common,
                "sequence": 3,
                "role": "tool",
                "created_at": _iso(rows[3].created_at),
                "text": "",
                "tool_result": {
                    "tool_call_id": "call_calc",
                    "name": "calculator",
                    "output": {"expression": "6*7", "result": 42},
                },
            },
            {
                **common,
                "sequence": 4,
                "role": "assistant",
                "created_at": _iso(rows[4].created_at),
                "text": "6 × 7 = **42**.",
                "duration_ms": rows[4].duration_ms,
            },
        ],
    }
    assert rows[4].duration_ms is not None and rows[4].duration_ms > 0


def test_unknown_format_and_another_users_chat(stack: str) -> None:
    # given
    alice = person("alice")
    charlie = person("charlie")
    ChatMessageFactory(session=alice.session, sequence=0, role="user", content="secret")
    url = f"{stack}/api/chat/sessions/{alice.session.pk}/export"
    # when
    unknown = httpx.get(url, params={"format": "pdf"}, headers=alice.headers)
    foreign = httpx.get(url, params={"format": "json"}, headers=charlie.headers)
    foreign_md = httpx.get(url, headers=charlie.headers)
    missing = httpx.get(f"{stack}/api/chat/sessions/{uuid.UUID(int=1)}/export", headers=alice.headers)
    anonymous = httpx.get(url)
    # then
    assert (unknown.status_code, unknown.headers["content-type"]) == (400, "application/json")
    assert unknown.json() == {"format": ['"pdf" is not a valid choice.']}
    assert (foreign.status_code, foreign.json()) == (404, {"detail": f"Session {alice.session.pk} not found."})
    assert (foreign_md.status_code, foreign_md.json()) == (404, {"detail": f"Session {alice.session.pk} not found."})
    assert "content-disposition" not in foreign.headers
    assert missing.status_code == 404
    assert anonymous.status_code == 401
