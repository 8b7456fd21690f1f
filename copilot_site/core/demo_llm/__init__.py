"""The offline demo model ``make run`` answers with when no LLM key is set, and its HTTP server."""

from __future__ import annotations

from copilot_site.core.demo_llm.model import DemoReply, demo_reply
from copilot_site.core.demo_llm.server import DemoLLMServer

__all__ = ["DemoLLMServer", "DemoReply", "demo_reply"]
