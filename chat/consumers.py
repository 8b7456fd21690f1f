"""WebSocket consumer for a chat session (`/ws/chat/{session_id}/`).

Thin: authenticates, checks ownership, validates frames. Turn streaming is wired
in by the transport layer.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .errors import SessionNotFound
from .selectors import session_get_for_user

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


@database_sync_to_async  # type: ignore[untyped-decorator]
def _owns_session(session_id: str, user: Any) -> bool:
    try:
        session_get_for_user(session_id=session_id, user=user)
    except SessionNotFound:
        return False
    return True


class ChatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        user = self.scope.get("user")
        # Accept before closing: a close during the handshake reaches the client
        # as a bare HTTP 403, and the application close code would be lost.
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.session_id: str = self.scope["url_route"]["kwargs"]["session_id"]
        if not await _owns_session(self.session_id, user):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.send_json({"type": "ready", "session_id": self.session_id})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"type": "error", "code": "unsupported", "message": "Unknown frame type."})
