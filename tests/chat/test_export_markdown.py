"""Markdown export details: notices, fences that content cannot close, file names."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rest_framework.test import APIClient

from chat.models import ChatMessage, ChatSession
from tests.factories import ChatMessageFactory


def _session(user: Any, title: str | None, rows: list[dict[str, Any]]) -> ChatSession:
    session = ChatSession.objects.create(user=user, title=title)
    stamp = dt.datetime(2026, 1, 2, 9, 30, tzinfo=dt.UTC)
    for sequence, row in enumerate(rows):
        ChatMessageFactory(session=session, sequence=sequence, **row)
    ChatMessage.objects.filter(session=session).update(created_at=stamp)
    ChatSession.objects.filter(pk=session.pk).update(created_at=stamp, updated_at=stamp)
    return session


def test_notices_system_rows_and_backticks_in_the_markdown(alice: Any, alice_client: APIClient) -> None:
    # given: a stopped turn, a failed one, a system row, and a tool output full of backticks
    session = _session(
        alice,
        "Café ☕ notes",
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "kind": "stopped", "content": "Stopped"},
            {"role": "system", "content": "internal"},
            {"role": "user", "content": "second"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "function": {"name": "web_fetch", "arguments": "not json"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "name": "web_fetch", "content": "```` fenced ```"},
            {"role": "assistant", "kind": "error_notice", "content": "The model is unavailable."},
        ],
    )
    # when
    response = alice_client.get(f"/api/chat/sessions/{session.pk}/export", {"format": "md"})
    # then
    assert response.status_code == 200
    assert response.content.decode() == (
        "# Café ☕ notes\n\n"
        f"Chat `{session.pk}`, started 2026-01-02 09:30:00 UTC, exported from Copilot.\n\n"
        "## You · 2026-01-02 09:30:00 UTC\n\nfirst\n\n"
        "## Copilot · 2026-01-02 09:30:00 UTC\n\n_Stopped._\n\n"
        "## You · 2026-01-02 09:30:00 UTC\n\nsecond\n\n"
        "## Copilot · 2026-01-02 09:30:00 UTC\n\n"
        "**Tool call** `web_fetch` (`c1`)\n\n```text\nnot json\n```\n\n"
        "**Tool output** `web_fetch` (`c1`)\n\n`````text\n```` fenced ```\n`````\n\n"
        "_The answer failed: The model is unavailable._\n"
    )


def test_file_names(alice: Any, alice_client: APIClient) -> None:
    # given
    titled = _session(alice, "Café ☕ notes", [])
    untitled = _session(alice, None, [])
    # when
    titled_md = alice_client.get(f"/api/chat/sessions/{titled.pk}/export")
    untitled_json = alice_client.get(f"/api/chat/sessions/{untitled.pk}/export", {"format": "json"})
    # then
    assert titled_md["Content-Disposition"] == f'attachment; filename="cafe-notes-{str(titled.pk)[:8]}.md"'
    assert untitled_json["Content-Disposition"] == f'attachment; filename="chat-{str(untitled.pk)[:8]}.json"'
    assert untitled_json.json()["messages"] == []
