"""What the engine tests share: a turn started as the worker starts it, and views of its
events and rows without their random ids.

The engine runs against the scripted LLM server over real HTTP, with the real
database; each test asserts the exact event sequence a client receives and the
exact rows stored.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from chat.engine.events import StreamEvent
from chat.engine.request import TurnHooks, TurnRequest
from chat.engine.turn import run_turn
from chat.models import ChatMessage, ChatSession, TurnUsage
from chat.selectors import session_get_for_user
from chat.services.messages import message_duplicate_of, messages_save_new
from copilot_site.testing.llm_script import FakeLLMServer


def message_append_user(
    *, session_id: uuid.UUID | str, content: str, client_message_id: str | None = None, user: Any = None
) -> ChatMessage | None:
    """Save a user message the way dispatch does before it starts a turn: the duplicate rule
    (`message_duplicate_of`), then `messages_save_new`; None when it was a repeat. With
    `user` the session must be theirs (SessionNotFound otherwise)."""
    if user is not None:
        session_get_for_user(session_id=session_id, user=user)
    with transaction.atomic():
        repeat = message_duplicate_of(session_id=session_id, content=content, client_message_id=client_message_id)
        if repeat is not None:  # '' names a repeat with no turn yet
            return None
        row = ChatMessage(role=ChatMessage.Role.USER, content=content, client_message_id=client_message_id or None)
        messages_save_new(session_id=session_id, messages=[row])
        return row


# A notice row as `stored` lists it: role, content, kind.
STOPPED_ROW = ("assistant", "Stopped", "stopped")


def error_row(text: str) -> tuple[str, str, str]:
    return ("assistant", text, "error_notice")


CALC = {"name": "calculator", "arguments": {"expression": "2+3"}, "id": "call_calc"}
CLOCK = {"name": "get_current_time", "arguments": {}, "id": "call_clock"}


def start_turn(
    session: ChatSession,
    *,
    user_id: int | None = None,
    cancel: asyncio.Event | None = None,
    drain_pending: Any = None,
    requeue_pending: Any = None,
    **fields: Any,
) -> Any:
    """The engine as the worker runs it: a request as dispatch builds it, and the hooks."""
    request = TurnRequest(
        session_id=str(session.pk),
        turn_id=str(uuid.uuid4()),
        user_id=session.user_id if user_id is None else user_id,
        claimed_at=time.time(),
        **fields,
    )
    hooks = TurnHooks(cancel=cancel or asyncio.Event(), drain_pending=drain_pending, requeue_pending=requeue_pending)
    return run_turn(request, hooks)


async def run(session: ChatSession, message: str | None, **kwargs: Any) -> list[StreamEvent]:
    if message is not None:
        await sync_to_async(message_append_user)(session_id=session.pk, content=message)
    return [event async for event in start_turn(session, **kwargs)]


def shape(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    """Events without their random ids: (type, the fields a test cares about)."""
    out: list[tuple[Any, ...]] = []
    for event in events:
        wire = event.to_wire()
        kind = wire["type"]
        if kind in ("text-delta", "reasoning-delta"):
            out.append((kind, wire["delta"]))
        elif kind == "tool-input-start":
            out.append((kind, wire["toolCallId"], wire["toolName"]))
        elif kind == "tool-input-available":
            out.append((kind, wire["toolCallId"], wire["input"]))
        elif kind == "tool-output-available":
            out.append((kind, wire["toolCallId"], wire["output"]))
        elif kind == "error":
            out.append((kind, wire["errorText"]))
        elif kind == "data-error":
            out.append((kind, wire["data"]["code"]))
        else:
            out.append((kind,))
    return out


def block_ids_are_consistent(events: list[StreamEvent]) -> bool:
    """Every delta belongs to the block opened before it, and every block gets its own id."""
    seen: set[str] = set()
    open_ids: set[str] = set()
    for event in events:
        wire = event.to_wire()
        kind = wire["type"]
        if kind in ("text-start", "reasoning-start"):
            if wire["id"] in seen:
                return False
            seen.add(wire["id"])
            open_ids.add(wire["id"])
        elif kind in ("text-delta", "reasoning-delta") and wire["id"] not in open_ids:
            return False
        elif kind in ("text-end", "reasoning-end"):
            if wire["id"] not in open_ids:
                return False
            open_ids.discard(wire["id"])
    return not open_ids


@sync_to_async
def stored(session: ChatSession) -> list[tuple[Any, ...]]:
    rows = ChatMessage.objects.filter(session=session).order_by("sequence")
    out: list[tuple[Any, ...]] = []
    for row in rows:
        if row.role == "tool":
            out.append(("tool", row.tool_call_id, row.content))
        elif row.tool_calls:
            calls = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in row.tool_calls]
            out.append((row.role, row.content, calls))
        elif row.kind != ChatMessage.Kind.MESSAGE:
            out.append((row.role, row.content, row.kind))
        else:
            out.append((row.role, row.content))
    return out


@sync_to_async
def sequences(session: ChatSession) -> list[int]:
    return list(ChatMessage.objects.filter(session=session).order_by("sequence").values_list("sequence", flat=True))


@sync_to_async
def turn_usage(session: ChatSession) -> TurnUsage:
    return TurnUsage.objects.get(session=session)


def request_messages(llm: FakeLLMServer, index: int = -1) -> list[dict[str, Any]]:
    completions = [r for r in llm.requests if r["path"].endswith("/chat/completions")]
    messages: list[dict[str, Any]] = completions[index]["body"]["messages"]
    return messages
