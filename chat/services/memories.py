"""Memory writes for the remember / forget tools."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat.models import Memory

if TYPE_CHECKING:
    from copilot_site.accounts.models import User

MEMORY_MAX_CHARS = 2000


def memory_create(*, user: User, content: str) -> Memory:
    return Memory.objects.create(user=user, content=content.strip()[:MEMORY_MAX_CHARS])


def memory_delete(*, user: User, memory_id: int) -> bool:
    """Delete one of the user's memories; False when it is not theirs or does not exist."""
    deleted, _ = Memory.objects.filter(user=user, pk=memory_id).delete()
    return deleted > 0
