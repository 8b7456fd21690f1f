"""The per-loop pool on its own: warm-up at worker start, one connection per server, closing."""

from __future__ import annotations

import asyncio

import pytest

from chat.mcp.services import mcp_server_create
from chat.mcp.tools import mcp_connections_warm, turn_pool
from copilot_site.testing.mcp_server import McpTestServer
from tests.chat.mcp.conftest import TOKEN


@pytest.mark.django_db(transaction=True)
def test_warm_up_connects_every_enabled_server_in_the_background(mcp_http: McpTestServer) -> None:
    # given
    server = mcp_server_create(name="docs", url=mcp_http.url, bearer_token=TOKEN)
    mcp_server_create(name="off", url="http://127.0.0.1:9/mcp", enabled=False)

    async def scenario() -> tuple[int, list[int], bool]:
        count = await mcp_connections_warm()
        pool = turn_pool()
        connection = pool.connections[server.pk]
        up = await connection.ready(20)  # waits for the connection attempt the warm-up started
        ids = sorted(pool.connections)
        await pool.close()
        return count, ids, up

    # when
    count, ids, up = asyncio.run(scenario())
    # then
    assert (count, ids, up) == (1, [server.pk], True)
