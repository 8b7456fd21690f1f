"""What a turn is asked to do, and the hooks it is run with.

Dispatch builds one `TurnRequest` when it claims a turn; the Celery task carries
it as JSON (`to_payload`), the worker rebuilds it (`from_payload`) and hands it
to the engine with the worker's `TurnHooks`. Nothing on the way re-reads what
dispatch already knew.

A payload is plain JSON with these keys:

    session_id  str      the chat
    turn_id     str      the claimed turn (the id every chunk and row of it carries)
    user_id     int      the owner of the chat
    mode        str|null `fast` | `extended_thinking` (null: the default)
    model       str|null `standard` | `advanced` (null: standard)
    page_context obj|null `{url?, content?}` the page the user was on
    arrived_at  float    unix time the request that started the turn arrived
    claimed_at  float    unix time the turn was claimed (its duration counts from here)

`from_payload` also reads the payload of the release before this one (`context`
and `request_arrival_at`, no `claimed_at`), so tasks queued across a deploy run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class PendingLike(Protocol):
    """What the engine reads from a drained message: ``content``, and when present
    ``context`` (``{url?, content?}``) and ``file_ids``. The transport's own pending
    type fits as is."""

    @property
    def content(self) -> str: ...


# Drained follow-ups: the transport's pending type (or `PendingFollowUp`), see PendingLike.
DrainPending = Callable[[], Awaitable[Sequence[PendingLike]]]
RequeuePending = Callable[[list[Any]], Awaitable[None]]


class InvalidTurnPayload(ValueError):
    """A task payload that is not a turn request (a missing key or a wrong type)."""


@dataclass(frozen=True)
class TurnRequest:
    session_id: str
    turn_id: str
    user_id: int
    mode: str | None = None
    model: str | None = None
    page_context: Mapping[str, str] | None = None
    arrived_at: float = 0.0
    claimed_at: float = 0.0

    def to_payload(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "user_id": self.user_id,
            "mode": self.mode,
            "model": self.model,
            "page_context": dict(self.page_context) if self.page_context is not None else None,
            "arrived_at": self.arrived_at,
            "claimed_at": self.claimed_at,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TurnRequest:
        try:
            session_id = payload["session_id"]
            turn_id = payload["turn_id"]
            user_id = payload["user_id"]
        except KeyError as exc:
            raise InvalidTurnPayload(f"turn payload has no {exc.args[0]!r}") from exc
        if not isinstance(user_id, int) or isinstance(user_id, bool):
            raise InvalidTurnPayload("turn payload's user_id is not an integer")
        page_context = payload.get("page_context", payload.get("context"))
        if page_context is not None and not isinstance(page_context, Mapping):
            raise InvalidTurnPayload("turn payload's page_context is not an object")
        arrived_at = float(payload.get("arrived_at", payload.get("request_arrival_at")) or 0.0)
        return cls(
            session_id=str(session_id),
            turn_id=str(turn_id),
            user_id=user_id,
            mode=_optional_str(payload.get("mode")),
            model=_optional_str(payload.get("model")),
            page_context={str(k): str(v) for k, v in page_context.items()} if page_context is not None else None,
            arrived_at=arrived_at,
            claimed_at=float(payload.get("claimed_at") or arrived_at),
        )


def _optional_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidTurnPayload(f"turn payload holds {value!r} where a string or null belongs")
    return value


@dataclass(frozen=True)
class TurnHooks:
    """What the worker gives the engine besides the request.

    `cancel`: set it to stop the turn from outside (running tools are cancelled,
    the engine closes its open blocks and finishes as stopped). `drain_pending` is
    called at turn start and at each tool-round boundary; the messages it returns
    are persisted as user rows and shown to the model, and go back through
    `requeue_pending` if persisting them fails. `keepalive` is called while the turn
    waits for the user to approve a tool call: the turn is alive although it streams
    nothing (the runtime's idle timeout counts from the last call).
    """

    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    drain_pending: DrainPending | None = None
    requeue_pending: RequeuePending | None = None
    keepalive: Callable[[], None] | None = None
