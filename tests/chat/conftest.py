"""Chat test fixtures: the scripted LLM server (one per run) and settings pointing at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from copilot_site.testing.llm_script import FakeLLMServer


def fake(script: dict[str, Any]) -> str:
    """A user message that makes the fake LLM play ``script``."""
    return f"<<fake {json.dumps(script)}>>"


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def llm(fake_llm_server: FakeLLMServer, settings: Any) -> FakeLLMServer:
    """The fake LLM with every provider setting pointed at it, and its request log cleared."""
    settings.COPILOT_LLM_PROVIDER = "openai_compat"
    settings.COPILOT_LLM_BASE_URL = fake_llm_server.base_url
    settings.COPILOT_LLM_API_KEY = "test-key"
    settings.ANTHROPIC_BASE_URL = fake_llm_server.anthropic_base_url
    settings.ANTHROPIC_API_KEY = "test-key"
    settings.COPILOT_LLM_MAX_RETRIES = 0
    settings.COPILOT_LLM_TIMEOUT_S = 30.0
    settings.COPILOT_MODEL_PRICES = {}
    fake_llm_server.reset()
    return fake_llm_server


@pytest.fixture
def title_task_delay() -> Iterator[mock.MagicMock]:
    """The title task's enqueue, captured instead of sent to the broker."""
    with mock.patch("chat.tasks.generate_title.delay") as delay:
        yield delay
