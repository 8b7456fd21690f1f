"""Chat writes. Import from here: ``from chat.services import message_append_user``."""

from __future__ import annotations

from chat.services.memories import memory_create, memory_delete
from chat.services.messages import message_append_user, messages_save_new
from chat.services.sessions import session_create, session_delete, session_rename
from chat.services.titles import session_title_generate, session_title_set_if_empty
from chat.services.usage import turn_usage_finish, turn_usage_start

__all__ = [
    "memory_create",
    "memory_delete",
    "message_append_user",
    "messages_save_new",
    "session_create",
    "session_delete",
    "session_rename",
    "session_title_generate",
    "session_title_set_if_empty",
    "turn_usage_finish",
    "turn_usage_start",
]
