"""Telling WebSockets about a session's turns through the channel layer (best effort).

A session's group holds every socket showing that session; a user's group holds
every socket of that user, whatever it shows (completion notices).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def notify_session(session_id: object, message: dict[str, Any]) -> None:
    """Tell every WebSocket watching the session (best effort)."""
    _notify_group(session_group(session_id), message)


def session_group(session_id: object) -> str:
    return f"chat_session_{session_id}"


def user_group(user_id: object) -> str:
    """Every WebSocket of the user, whatever session it shows (completion notices)."""
    return f"copilot_user_{user_id}"


def completion_notice(session_id: object, status: str) -> dict[str, Any]:
    """The frame a user's sockets get when one of their turns ends, whatever chat they show."""
    return {"type": "copilot_completion", "event": "session_completed", "session_id": str(session_id),
            "status": status}  # fmt: skip


def notify_user(user_id: object, message: dict[str, Any]) -> None:
    """Tell every WebSocket of the user (best effort)."""
    if user_id not in (None, ""):
        _notify_group(user_group(user_id), message)


async def notify_user_async(user_id: object, message: dict[str, Any]) -> None:
    if user_id not in (None, ""):
        await _notify_group_async(user_group(user_id), message)


def _notify_group(group: str, message: dict[str, Any]) -> None:
    from asgiref.sync import async_to_sync

    try:
        async_to_sync(_notify_group_async)(group, message)
    except RuntimeError:  # called on a thread running an event loop: a caller's mistake, not the turn's
        logger.warning("Could not notify group %s from an event loop thread", group, exc_info=True)


async def _notify_group_async(group: str, message: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except Exception:  # noqa: BLE001 - a notification must never fail a turn
        logger.warning("Could not notify group %s", group, exc_info=True)
