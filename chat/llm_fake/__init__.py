"""Scripted OpenAI-compatible / Anthropic-format LLM server for tests and offline demos."""

from __future__ import annotations

from chat.llm_fake.server import FakeLLMServer

__all__ = ["FakeLLMServer"]
