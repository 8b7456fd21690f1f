"""Operator-configured MCP URLs may be on loopback; user-supplied URLs (web_fetch) may not."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.urls import get_resolver

from chat.mcp.probe import mcp_server_test
from chat.mcp.services import mcp_server_create
from chat.tools import ToolError
from chat.tools.builtin.web_fetch import fetch
from copilot_site.testing.mcp_server import McpTestServer
from tests.chat.mcp.conftest import TOKEN


@pytest.mark.django_db(transaction=True)
def test_operator_loopback_server_is_reached_while_web_fetch_refuses_the_same_url(
    settings: Any, mcp_http: McpTestServer
) -> None:
    # given: no loopback exception for web_fetch
    settings.COPILOT_WEB_FETCH_ALLOWED_HOSTS = []
    server = mcp_server_create(name="docs", url=mcp_http.url, bearer_token=TOKEN)
    # when / then: the operator's server on 127.0.0.1 answers
    assert mcp_server_test(server=server).reachable is True
    # and a user's URL to the same address is refused before any request
    with pytest.raises(ToolError, match="which is not a public address"):
        asyncio.run(fetch(mcp_http.url, max_chars=1000))


def test_no_url_lets_a_user_add_or_change_a_server() -> None:
    # The only way in is the Django admin (staff); no API or page route names MCP.
    routes: list[str] = []

    def walk(patterns: Any, prefix: str = "") -> None:
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                routes.append(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns)
    assert [route for route in routes if "mcp" in route.lower() and not route.startswith("admin/")] == []
