"""The built-in tools; importing this package registers them."""

from __future__ import annotations

from . import calculator, clock, memory, search_chats, web_fetch, workspace_files

__all__ = ["calculator", "clock", "memory", "search_chats", "web_fetch", "workspace_files"]
