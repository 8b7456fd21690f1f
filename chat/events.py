"""The shapes of the client frames of both WebSockets, declared once.

Client frames are validated against these shapes; extra keys are rejected.
"""

from __future__ import annotations

from typing import Any

CLIENT_FRAME_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # frame type -> (required keys, allowed keys)
    "send": (
        frozenset({"type", "message"}),
        frozenset({"type", "message", "client_message_id", "mode", "model", "delivery"}),
    ),
    "stop": (frozenset({"type"}), frozenset({"type"})),
    "resume": (frozenset({"type"}), frozenset({"type", "after"})),
    # Approve / Deny a tool call that waits (as POST …/approvals/{approval_id});
    # answered with {"type": "approval_decided", "approval_id", "status"} or an error frame.
    "approval": (
        frozenset({"type", "approval_id", "approved"}),
        frozenset({"type", "approval_id", "approved", "reason"}),
    ),
}


SUBSCRIBE_FRAME_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # `/ws/chat/` (one socket per user): action -> (required keys, allowed keys)
    "subscribe": (frozenset({"action", "session_id"}), frozenset({"action", "session_id"})),
    "unsubscribe": (frozenset({"action"}), frozenset({"action"})),
}


def _shape_problem(content: dict[str, Any], required: frozenset[str], allowed: frozenset[str]) -> str | None:
    if missing := sorted(required - content.keys()):
        return f"Missing field(s): {', '.join(missing)}."
    if extra := sorted(content.keys() - allowed):
        return f"Unexpected field(s): {', '.join(extra)}."
    return None


def validate_subscribe_frame(content: Any) -> str | None:
    """The problem with a `/ws/chat/` client frame, or None when it is valid."""
    if not isinstance(content, dict):
        return "A frame must be a JSON object."
    action = content.get("action")
    if action not in SUBSCRIBE_FRAME_KEYS:
        return "Unknown action; expected subscribe or unsubscribe."
    if problem := _shape_problem(content, *SUBSCRIBE_FRAME_KEYS[action]):
        return problem
    if action == "subscribe" and not isinstance(content["session_id"], str):
        return "Field session_id must be a string."
    return None


def validate_client_frame(content: Any) -> str | None:
    """The problem with a client frame, or None when it is valid."""
    if not isinstance(content, dict):
        return "A frame must be a JSON object."
    frame_type = content.get("type")
    if frame_type not in CLIENT_FRAME_KEYS:
        return "Unknown frame type; expected send, stop, resume or approval."
    if problem := _shape_problem(content, *CLIENT_FRAME_KEYS[frame_type]):
        return problem
    if content.get("delivery") not in (None, "now", "next_turn"):
        return "Field delivery must be now or next_turn."
    if "approved" in content and not isinstance(content["approved"], bool):
        return "Field approved must be true or false."
    for key in ("message", "client_message_id", "after", "mode", "model", "approval_id", "reason"):
        if key in content and content[key] is not None and not isinstance(content[key], str):
            return f"Field {key} must be a string."
    return None
