"""WebSocket consumers: one per chat session (`/ws/chat/{session_id}/`, the public
turn stream) and one per user (`/ws/chat/`, the subscribe protocol).

`ChatConsumer` (`/ws/chat/{session_id}/`):

Thin: authenticates, checks ownership, validates frames, calls the same services
as the HTTP API, and relays the turn's event log. Every socket follows the
turn's Redis stream itself, so any number of tabs see every event once, in
order; a `turn.started` group message makes idle sockets pick up turns started
elsewhere. Disconnecting never affects the turn. Each socket also joins the
user's group `copilot_user_{id}` and relays `copilot_completion` notices for any
of the user's sessions. `DELETE …/stream` closes the sockets following that
session's turn with code 4000; a client that reconnects and sends `resume`
re-attaches.

`SubscribeConsumer` (`/ws/chat/`): a socket of the user, not of one chat. It joins
the user's group (completion notices) and follows one chat's turn at a time:
`{"action": "subscribe", "session_id": …}` replaces the current subscription,
`{"action": "unsubscribe"}` ends it and is answered `{"type": "unsubscribed"}` once the
relay has stopped, so no chunk of that subscription follows the answer. A subscription replays the running turn from
its start and follows it live; each chunk goes out as the same JSON as the SSE
`data:` payload (no envelope, no `[DONE]`), heartbeats as `{"type": "heartbeat"}`,
and `finish` ends it. Further decisions: the socket says
`{"type": "ready"}` once authenticated, like the per-chat socket; every accepted
subscribe is answered `{"type": "subscribed", "session_id": …, "turn_id": …}`
before its first chunk, so a client can tell the end of one subscription's frames
from the start of the next; a chat with no running turn answers that frame with
`"turn_id": null` and then `{"type": "finish"}` (the socket's form of `GET
…/stream`'s 204); an unknown or foreign chat is `{"type": "error", "errorText":
"Session … not found."}` and leaves the current subscription as it was; a bad
frame is an `error` frame too. `DELETE …/stream` closes the socket with 4000, as it
does the per-chat sockets following that chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from copilot_site.accounts.sockets import SocketCredential, auth_group, credential_is_valid, socket_credential
from copilot_site.core.errors import ApplicationError
from copilot_site.core.exceptions import error_frame
from copilot_site.core.outages import OUTAGE_DETAILS, outage_code
from copilot_site.core.parsers import JsonBodyRejected, json_loads_bounded

from .errors import SessionNotFound
from .events import validate_client_frame, validate_subscribe_frame
from .selectors import session_get_for_user
from .services.turns import turn_running
from .turns.follow import ListenerDisconnected, StreamItem, follow_turn
from .turns.notify import session_group, user_group
from .turns.sse import sse_data

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_DISCONNECTED = 4000  # `DELETE …/stream` closed the session's listeners; reconnecting re-attaches
CLOSE_NORMAL = 1000  # after an outage's error frame: the client reconnects once the service is back


@database_sync_to_async  # type: ignore[untyped-decorator]
def _owns_session(session_id: str, user: User) -> bool:
    try:
        session_get_for_user(session_id=session_id, user=user)
    except SessionNotFound:
        return False
    return True


@database_sync_to_async  # type: ignore[untyped-decorator]
def _credential_valid(credential: SocketCredential, user: User) -> bool:
    return credential_is_valid(credential, user)


@database_sync_to_async  # type: ignore[untyped-decorator]
def _send(user: User, session_id: str, content: dict[str, Any]) -> Any:
    from .turns.dispatch import turn_send

    return turn_send(
        user=user,
        session_id=session_id,
        message=content["message"],
        client_message_id=content.get("client_message_id"),
        mode=content.get("mode"),
        model=content.get("model"),
        next_turn=content.get("delivery") == "next_turn",
    )


@database_sync_to_async  # type: ignore[untyped-decorator]
def _decide(user: User, session_id: str, content: dict[str, Any]) -> dict[str, Any]:
    from .services.approvals import approval_decide

    approval = approval_decide(
        user=user,
        session_id=session_id,
        approval_id=content["approval_id"],
        approved=content["approved"],
        reason=content.get("reason") or "",
    )
    return {"type": "approval_decided", "approval_id": str(approval.pk), "status": approval.status}


@database_sync_to_async  # type: ignore[untyped-decorator]
def _stop(session_id: str) -> dict[str, Any]:
    from .turns.registry import turn_cancel_request

    return turn_cancel_request(session_id)


@database_sync_to_async  # type: ignore[untyped-decorator]
def _running_turn(session_id: str, *, reap: bool = False) -> str | None:
    """The chat's running turn. With `reap`, a dead worker's turn is ended first, as
    `GET …/stream` does (the subscribe socket); `resume` reads the meta as it is."""
    meta = turn_running(session_id, reap=reap)
    return meta.turn_id if meta is not None else None


def _chunk_text(item: StreamItem) -> str:
    """A relayed item as the subscribe socket sends it: the SSE `data:` payload."""
    return '{"type":"heartbeat"}' if item.is_heartbeat else sse_data(item)


def _frame_text(item: StreamItem) -> str:
    """The contract frame of a relayed item. A stored chunk is forwarded as the JSON text
    the worker wrote (already parsed and type-checked by `follow_turn`), not re-encoded."""
    if item.is_heartbeat:
        return '{"type":"heartbeat"}'
    if item.raw is not None and item.event_id is not None:
        return f'{{"event_id":"{item.event_id}","turn_id":"{item.turn_id}","chunk":{item.raw.decode()}}}'
    return json.dumps({"event_id": item.event_id, "turn_id": item.turn_id, "chunk": item.chunk})


class _TurnRelay(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """What both sockets share: the user's completion notices, one relay task at a time,
    and the groups left on disconnect."""

    session_id: str
    groups_joined: tuple[str, ...] = ()
    following: str | None = None
    follow_task: asyncio.Task[None] | None = None
    credential: SocketCredential | None = None
    auth_group_name: str | None = None
    relay_frame_text: Callable[[StreamItem], str] | None = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Decode a client frame. A frame that is not JSON text (binary, empty, malformed,
        over COPILOT_WS_MAX_FRAME_BYTES or nested past COPILOT_API_MAX_JSON_DEPTH) is
        answered with an error frame and the socket stays open."""
        if not text_data:
            await self._invalid_frame("A frame must be JSON text.")
            return
        limit = settings.COPILOT_WS_MAX_FRAME_BYTES
        if len(text_data) > limit or len(text_data.encode("utf-8", errors="surrogatepass")) > limit:
            await self._invalid_frame(f"The frame is larger than {limit} bytes.")
            return
        try:
            content = json_loads_bounded(text_data)
        except JsonBodyRejected as exc:
            await self._invalid_frame(str(exc).replace("request body", "frame"))
            return
        except ValueError:
            await self._invalid_frame("A frame must be JSON text.")
            return
        await self.receive_json(content, **kwargs)

    async def _invalid_frame(self, problem: str) -> None:
        await self.send_json({"type": "error", "code": "invalid_frame", "message": problem})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The channel layer's own Redis connection failing ends channels' receive loop:
        then the relayed turn ends with `error` + `finish`, an `error` frame follows and the
        socket closes normally (1000), never with 1011."""
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:
            if (code := outage_code(exc)) is None:
                raise
            logger.warning("WebSocket channel layer unavailable: %s (%s)", code, exc)
            turn_id, frame_text = self.following, self.relay_frame_text
            relaying = self.follow_task is not None and not self.follow_task.done()
            await self._stop_following()
            if relaying and turn_id is not None and frame_text is not None:
                for chunk in ({"type": "error", "errorText": OUTAGE_DETAILS[code]}, {"type": "finish"}):
                    await self._send_text_quietly(frame_text(StreamItem(None, turn_id, chunk)))
            await self._send_quietly({"type": "error", "code": code, "message": OUTAGE_DETAILS[code]})
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_NORMAL)

    async def dispatch(self, message: Any) -> None:
        """A database or Redis outage in any handler is an `error` frame with its code, then a
        normal close (1000): the client reconnects later. Never an exception out of the
        consumer, which channels answers with 1011."""
        try:
            await super().dispatch(message)
        except Exception as exc:
            if (code := outage_code(exc)) is None:
                raise
            logger.warning("WebSocket %s: %s (%s)", message.get("type"), code, exc)
            await self._send_quietly({"type": "error", "code": code, "message": OUTAGE_DETAILS[code]})
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_NORMAL)

    async def _accept_user(self) -> Any:
        """Accept the socket and return its user; None (closed with 4401) when anonymous.
        Accept before closing: a close during the handshake reaches the client as a bare
        HTTP 403, and the application close code would be lost."""
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return None
        self.credential = socket_credential(self.scope)
        if self.credential is not None:
            self.auth_group_name = auth_group(self.credential)
            await self.channel_layer.group_add(self.auth_group_name, self.channel_name)
        return user

    async def _credential_ended(self) -> bool:
        """Re-check the socket's key or session before acting on a frame; when it has been
        revoked or logged out, say so and close with 4401 (the frame is not acted on)."""
        if self.credential is None or await _credential_valid(self.credential, self.scope["user"]):
            return False
        await self.auth_revoked({})
        return True

    async def auth_revoked(self, event: dict[str, Any]) -> None:
        """Group message: the socket's API key was revoked or its session logged out."""
        await self._send_quietly(
            {"type": "error", "code": "unauthenticated", "message": "Your sign-in ended; sign in again."}
        )
        await self._stop_following()
        await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _join(self, *groups: str) -> None:
        self.groups_joined = groups
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        await self._stop_following()
        if self.auth_group_name is not None:
            await self.channel_layer.group_discard(self.auth_group_name, self.channel_name)
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def copilot_completion(self, event: dict[str, Any]) -> None:
        """One of the user's turns ended (any session): `{type, event, session_id, status}`."""
        await self._send_quietly(event)

    def _start_relay(self, turn_id: str, after: str | None, frame_text: Callable[[StreamItem], str]) -> None:
        self.following, self.relay_frame_text = turn_id, frame_text
        self.follow_task = asyncio.create_task(self._relay(turn_id, after, frame_text))

    async def _relay(self, turn_id: str, after: str | None, frame_text: Callable[[StreamItem], str]) -> None:
        try:
            async with contextlib.aclosing(follow_turn(self.session_id, after=after, turn_id=turn_id)) as items:
                async for item in items:
                    if not await self._send_text_quietly(frame_text(item)) or item.is_terminal:
                        return
        except asyncio.CancelledError:
            raise
        except ListenerDisconnected:
            self.follow_task = None  # closing runs `disconnect`, which must not wait for this task
            await self.close(code=CLOSE_DISCONNECTED)
        except Exception as exc:
            code = outage_code(exc)
            if code is None:
                logger.exception("Relay of turn %s to a socket failed", turn_id)
            else:
                logger.warning("Relay of turn %s to a socket ended by an outage: %s (%s)", turn_id, code, exc)
            error_text = OUTAGE_DETAILS[code] if code is not None else "Stream error."
            for chunk in ({"type": "error", "errorText": error_text}, {"type": "finish"}):
                await self._send_text_quietly(frame_text(StreamItem(None, turn_id, chunk)))
            if code is not None:
                self.follow_task = None  # closing runs `disconnect`, which must not wait for this task
                with contextlib.suppress(Exception):
                    await self.close(code=CLOSE_NORMAL)

    async def _send_quietly(self, frame: dict[str, Any]) -> bool:
        return await self._send_text_quietly(json.dumps(frame))

    async def _send_text_quietly(self, text: str) -> bool:
        """Send a frame; False when the socket is already gone (the client left)."""
        try:
            await self.send(text_data=text)
        except Exception:  # noqa: BLE001 - a closed socket; the turn is unaffected
            logger.debug("Socket for session %s closed while relaying", getattr(self, "session_id", None))
            return False
        return True

    async def _stop_following(self) -> None:
        task, self.follow_task = self.follow_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class ChatConsumer(_TurnRelay):
    async def connect(self) -> None:
        if (user := await self._accept_user()) is None:
            return
        self.session_id = self.scope["url_route"]["kwargs"]["session_id"]
        if not await _owns_session(self.session_id, user):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self._join(session_group(self.session_id), user_group(user.pk))
        await self.send_json({"type": "ready", "session_id": self.session_id})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if await self._credential_ended():
            return
        problem = validate_client_frame(content)
        if problem is not None:
            await self._error("invalid_frame", problem)
            return
        handlers = {
            "send": self._on_send,
            "stop": self._on_stop,
            "resume": self._on_resume,
            "approval": self._on_approval,
        }
        handler = handlers[content["type"]]
        await handler(content)

    async def _on_send(self, content: dict[str, Any]) -> None:
        message = content["message"]
        if not message.strip() or len(message) > settings.COPILOT_MESSAGE_MAX_CHARS:
            await self._error(
                "invalid_message", f"A message must have 1 to {settings.COPILOT_MESSAGE_MAX_CHARS} characters."
            )
            return
        try:
            result = await _send(self.scope["user"], self.session_id, content)
        except ApplicationError as exc:  # the same table as the HTTP API's
            await self.send_json(error_frame(exc))
            return
        except Exception:
            logger.exception("WebSocket send failed for session %s", self.session_id)
            await self._error("internal_error", "Something went wrong; please retry.")
            return
        if result.outcome == "queued":
            await self.send_json({"type": "queued", **result.queued_body()})
            return
        if result.turn_id:
            await self._follow(result.turn_id, after=None)

    async def _on_stop(self, content: dict[str, Any]) -> None:
        result = await _stop(self.session_id)
        await self.send_json({"type": "stopped", **result})

    async def _on_approval(self, content: dict[str, Any]) -> None:
        try:
            frame = await _decide(self.scope["user"], self.session_id, content)
        except ApplicationError as exc:  # 404 / 409, as the HTTP endpoint answers
            await self.send_json(error_frame(exc))
            return
        await self.send_json(frame)

    async def _on_resume(self, content: dict[str, Any]) -> None:
        turn_id = await _running_turn(self.session_id)
        if turn_id is None:
            await self.send_json({"type": "idle"})
            return
        await self._follow(turn_id, after=content.get("after") or None, restart=True)

    # group messages ---------------------------------------------------------------------

    async def turn_started(self, event: dict[str, Any]) -> None:
        await self._follow(event["turn_id"], after=None)

    # relaying --------------------------------------------------------------------------------

    async def _follow(self, turn_id: str, *, after: str | None, restart: bool = False) -> None:
        if self.following == turn_id and self.follow_task is not None and not self.follow_task.done() and not restart:
            return
        await self._stop_following()
        self._start_relay(turn_id, after, _frame_text)

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})


class SubscribeConsumer(_TurnRelay):
    """`/ws/chat/`: the user's socket, following one chat's turn at a time (see the module doc)."""

    async def connect(self) -> None:
        if (user := await self._accept_user()) is None:
            return
        await self._join(user_group(user.pk))
        await self.send_json({"type": "ready"})

    async def _invalid_frame(self, problem: str) -> None:
        await self.send_json({"type": "error", "errorText": problem})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if await self._credential_ended():
            return
        problem = validate_subscribe_frame(content)
        if problem is not None:
            await self.send_json({"type": "error", "errorText": problem})
            return
        if content["action"] == "unsubscribe":
            # The relay task is cancelled and awaited before the answer goes out, and both
            # write to this socket in order: nothing of the old subscription follows it.
            await self._stop_following()
            await self.send_json({"type": "unsubscribed"})
            return
        session_id = content["session_id"]
        if not await _owns_session(session_id, self.scope["user"]):
            await self.send_json({"type": "error", "errorText": f"Session {session_id} not found."})
            return
        await self._stop_following()
        self.session_id = session_id
        turn_id = await _running_turn(session_id, reap=True)
        await self.send_json({"type": "subscribed", "session_id": session_id, "turn_id": turn_id})
        if turn_id is None:
            await self.send_json({"type": "finish"})
            return
        self._start_relay(turn_id, None, _chunk_text)
