"""The engine tests' session: alice's, already titled (so no title task is due)."""

from __future__ import annotations

from typing import Any

import pytest

from chat.models import ChatSession


@pytest.fixture
def session(alice: Any) -> ChatSession:
    return ChatSession.objects.create(user=alice, title="Existing title")
