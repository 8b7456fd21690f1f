"""A chat's transcript as a file: JSON or Markdown (`GET /api/chat/sessions/{id}/export`).

Both hold every `user`, `assistant`, `reasoning` and `tool` row of the session in order
(the owner's own export keeps tool calls, their inputs and outputs, reasoning and the
stopped/failed notices); other rows (`system`) are the platform's and are left out.

JSON (`EXPORT_FORMAT`, version 1): `{format, version, session, messages}`, each message
`{sequence, role, kind, created_at, turn_id, text, duration_ms, tool_calls, tool_result}`:
`tool_calls` (assistant rows) are `{id, name, input}` with the input decoded from its JSON
arguments; `tool_result` (tool rows) is `{tool_call_id, name, output}`, the output decoded
when it is JSON. Timestamps are ISO 8601 in UTC.

Markdown: the title, then one `## You` section per user message and one `## Copilot`
section per answer (all the rows a turn wrote), each headed with its time; reasoning is a
quote, tool calls and outputs are fenced code blocks (fences longer than any backtick run
inside, so no content can end them early).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from django.utils.text import slugify

from .models import ChatMessage, ChatSession

EXPORT_FORMAT = "copilot.chat-export"
EXPORT_VERSION = 1
EXPORTED_ROLES = (
    ChatMessage.Role.USER,
    ChatMessage.Role.ASSISTANT,
    ChatMessage.Role.REASONING,
    ChatMessage.Role.TOOL,
)
UNTITLED = "Untitled chat"

_BACKTICKS = re.compile(r"`+")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _decoded(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _tool_calls(row: ChatMessage) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for call in row.tool_calls or []:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        arguments = function.get("arguments")
        decoded = _decoded(arguments or "{}") if isinstance(arguments, str) else (arguments or {})
        calls.append({"id": str(call.get("id") or ""), "name": str(function.get("name") or "tool"), "input": decoded})
    return calls


def export_rows(*, session: ChatSession) -> list[ChatMessage]:
    """The current branch's rows of the exported roles (the version the user sees; other
    versions of edited or regenerated messages are not exported)."""
    from chat.selectors import session_branch_messages

    return [row for row in session_branch_messages(session=session) if row.role in EXPORTED_ROLES]


def export_message(row: ChatMessage) -> dict[str, Any]:
    is_tool = row.role == ChatMessage.Role.TOOL
    return {
        "sequence": row.sequence,
        "role": row.role,
        "kind": row.kind,
        "created_at": _iso(row.created_at),
        "turn_id": str(row.turn_id) if row.turn_id else None,
        "text": "" if is_tool else (row.content or ""),
        "duration_ms": row.duration_ms,
        "tool_calls": _tool_calls(row) if row.role == ChatMessage.Role.ASSISTANT else [],
        "tool_result": (
            {"tool_call_id": row.tool_call_id, "name": row.name, "output": _decoded(row.content)} if is_tool else None
        ),
    }


def session_export_json(*, session: ChatSession) -> dict[str, Any]:
    """The transcript as the JSON document described in the module docstring."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "session": {
            "id": str(session.pk),
            "title": session.title,
            "created_at": _iso(session.created_at),
            "updated_at": _iso(session.updated_at),
        },
        "messages": [export_message(row) for row in export_rows(session=session)],
    }


def _fenced(body: str, language: str) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{body}\n{fence}"


def _pretty(value: Any) -> tuple[str, str]:
    if isinstance(value, str):
        return value, "text"
    return json.dumps(value, indent=2, ensure_ascii=False), "json"


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _row_markdown(row: ChatMessage) -> list[str]:
    content = row.content or ""
    if row.role == ChatMessage.Role.REASONING:
        if not content.strip():
            return []
        seconds = f" ({row.duration_ms / 1000:.1f} s)" if row.duration_ms else ""
        return [f"> **Reasoning**{seconds}\n>\n{_quote(content)}"]
    if row.role == ChatMessage.Role.TOOL:
        body, language = _pretty(_decoded(row.content))
        return [f"**Tool output** `{row.name or 'tool'}` (`{row.tool_call_id}`)", _fenced(body, language)]
    if row.kind == ChatMessage.Kind.STOPPED:
        return ["_Stopped._"]
    if row.kind == ChatMessage.Kind.ERROR_NOTICE:
        return [f"_The answer failed: {content}_"]
    blocks = [content] if content.strip() else []
    for call in _tool_calls(row):
        body, language = _pretty(call["input"])
        blocks += [f"**Tool call** `{call['name']}` (`{call['id']}`)", _fenced(body, language)]
    return blocks


def session_export_markdown(*, session: ChatSession) -> str:
    """The transcript as Markdown (see the module docstring); ends with one newline."""
    blocks = [
        f"# {session.title or UNTITLED}",
        f"Chat `{session.pk}`, started {_when(session.created_at)}, exported from Copilot.",
    ]
    in_answer = False
    for row in export_rows(session=session):
        if row.role == ChatMessage.Role.USER:
            blocks += [f"## You · {_when(row.created_at)}", row.content or ""]
            in_answer = False
            continue
        if not in_answer:
            blocks.append(f"## Copilot · {_when(row.created_at)}")
            in_answer = True
        blocks += _row_markdown(row)
    return "\n\n".join(blocks) + "\n"


def export_filename(*, session: ChatSession, extension: str) -> str:
    """`<title slug>-<first 8 of the id>.<extension>` (`chat-…` for an untitled chat)."""
    stem = slugify(session.title or "")[:60].strip("-") or "chat"
    return f"{stem}-{str(session.pk)[:8]}.{extension}"
