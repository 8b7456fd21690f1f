"""Fixtures of the end-to-end transport tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def stack(daphne_server: str, celery_worker: Any, fake_llm: Any) -> str:
    """daphne + a real Celery worker + the scripted LLM (its request log cleared); the base URL."""
    fake_llm.reset()
    return daphne_server
