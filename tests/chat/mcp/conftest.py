"""Fixtures of the MCP tests: the real FastMCP test server over streamable HTTP, and server rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from copilot_site.testing.mcp_server import McpTestServer

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "logs"
TOKEN = "tok-5ecret-abc123"  # noqa: S105 (a test credential)


@pytest.fixture
def mcp_http() -> Iterator[McpTestServer]:
    """The test MCP server on a free loopback port, requiring ``Authorization: Bearer TOKEN``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = McpTestServer(token=TOKEN, log_path=ARTIFACTS / "mcp-test-server.log")
    with server:
        yield server


@pytest.fixture
def stack(daphne_server: str, celery_worker: Any, fake_llm: Any) -> str:
    """daphne + a real Celery worker + the scripted LLM (its request log cleared); the base URL."""
    fake_llm.reset()
    return daphne_server
