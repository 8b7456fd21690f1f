"""search_my_chats: the user's own earlier messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from asgiref.sync import sync_to_async

from chat.models import ChatMessage
from chat.selectors import message_search_for_user
from chat.tools.base import Tool, ToolContext, ToolError, ToolOutput
from chat.tools.registry import register

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

SNIPPET_CHARS = 300


def _snippet(content: str, query: str) -> str:
    position = content.lower().find(query.lower())
    start = max(0, position - SNIPPET_CHARS // 3) if position >= 0 else 0
    piece = content[start : start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(content) else "")


def _search(user: User, query: str, limit: int, exclude_session_id: str) -> list[dict[str, Any]]:
    rows: list[ChatMessage] = message_search_for_user(user=user, query=query, limit=limit + 50)
    results = []
    for row in rows:
        if str(row.session_id) == exclude_session_id:
            continue  # the current chat is already in the model's context
        results.append(
            {
                "session_id": str(row.session_id),
                "session_title": row.session.title or "",
                "role": row.role,
                "snippet": _snippet(row.content or "", query),
                "created_at": row.created_at.isoformat(timespec="seconds"),
            }
        )
        if len(results) >= limit:
            break
    return results


@register
class SearchMyChats(Tool):
    name = "search_my_chats"
    description = "Search the user's own earlier chats (other conversations) for a word or phrase."
    requires_auth = True
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 2, "maxLength": 200},
            "limit": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
        },
        "required": ["query"],
        "additionalProperties": False,
    }

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        if ctx.user is None:
            raise ToolError("Authentication required")
        query = str(arguments["query"]).strip()
        results = await sync_to_async(_search)(ctx.user, query, int(arguments.get("limit", 5)), ctx.session_id)
        return {"query": query, "results": results}
