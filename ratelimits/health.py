"""How often the pre-turn check failed open, for the health page.

Counted in process memory on purpose: these events happen exactly when Redis
(the shared store) is unreachable, and a database write per refused read would
slow every turn during an outage. Each web process reports its own count.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

_lock = threading.Lock()
_count = 0
_last_at: datetime | None = None


@dataclass(frozen=True)
class FailOpenStats:
    count: int
    last_at: datetime | None


def fail_open_record() -> None:
    global _count, _last_at
    with _lock:
        _count += 1
        _last_at = timezone.now()


def fail_open_stats() -> FailOpenStats:
    """Checks let through because Redis was unreachable, since this process started."""
    with _lock:
        return FailOpenStats(count=_count, last_at=_last_at)
