"""The scripted LLM server the tests drive: ``<<fake {…}>>`` scripts in a user message pick each reply."""

from __future__ import annotations

from copilot_site.testing.llm_script.server import FakeLLMServer

__all__ = ["FakeLLMServer"]
