"""remember / recall / forget: per-user memories in the database."""

from __future__ import annotations

from typing import Any, ClassVar

from asgiref.sync import sync_to_async

from chat.selectors import memory_search
from chat.services.memories import memory_create, memory_delete
from chat.tools.base import Tool, ToolContext, ToolError, ToolOutput
from chat.tools.registry import register


def _require_user(ctx: ToolContext) -> Any:
    if ctx.user is None:
        raise ToolError("Authentication required")
    return ctx.user


@register
class Remember(Tool):
    name = "remember"
    description = "Save a fact or preference the user wants remembered across chats."
    requires_auth = True
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"content": {"type": "string", "minLength": 1, "maxLength": 2000}},
        "required": ["content"],
        "additionalProperties": False,
    }

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        memory = await sync_to_async(memory_create)(user=_require_user(ctx), content=str(arguments["content"]))
        return {"id": memory.pk, "remembered": memory.content}


@register
class Recall(Tool):
    name = "recall"
    description = "Search the user's saved memories (all of them when the query is empty), newest first."
    requires_auth = True
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "maxLength": 200, "default": ""},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
        },
        "additionalProperties": False,
    }

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        memories = await sync_to_async(memory_search)(
            user=_require_user(ctx), query=str(arguments.get("query", "")), limit=int(arguments.get("limit", 10))
        )
        return {
            "memories": [
                {"id": m.pk, "content": m.content, "created_at": m.created_at.isoformat(timespec="seconds")}
                for m in memories
            ]
        }


@register
class Forget(Tool):
    name = "forget"
    description = "Delete one of the user's saved memories by its id (as returned by recall)."
    requires_auth = True
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"memory_id": {"type": "integer", "minimum": 1}},
        "required": ["memory_id"],
        "additionalProperties": False,
    }

    async def run(self, ctx: ToolContext, **arguments: Any) -> ToolOutput:
        memory_id = int(arguments["memory_id"])
        if not await sync_to_async(memory_delete)(user=_require_user(ctx), memory_id=memory_id):
            raise ToolError(f"No memory with id {memory_id}.")
        return f"Forgot memory {memory_id}."
