"""The per-loop pool on its own: warm-up at worker start, one connection per server, closing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from billing.services import account_tier_set
from chat.mcp.probe import mcp_server_test
from chat.mcp.services import mcp_server_create
from chat.mcp.tools import mcp_connections_warm, mcp_turn_tools, turn_pool
from chat.models import McpServer, McpTool
from copilot_site.testing.mcp_server import McpTestServer, stdio_command
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


def _offered_names(user: Any) -> list[str]:
    async def scenario() -> list[str]:
        try:
            return sorted(tool.name for tool in await mcp_turn_tools(user=user))
        finally:
            await turn_pool().close()

    return asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_operator_switches_apply_to_mcp_tools(settings: Any, mcp_http: McpTestServer, alice: Any) -> None:
    # given: one tool switched off by setting, one priced while credits are off, one off in its row
    server = mcp_server_create(name="docs", url=mcp_http.url, bearer_token=TOKEN)
    assert mcp_server_test(server=server).reachable is True
    McpTool.objects.filter(name="add").update(cost_cents=1)
    McpTool.objects.filter(name="fail").update(enabled=False)
    settings.COPILOT_DISABLED_TOOLS = ["docs__echo"]
    settings.ENABLE_CREDIT = False
    # when
    names = _offered_names(alice)
    # then
    assert names == [
        "docs__big", "docs__getenv", "docs__grow", "docs__image", "docs__session", "docs__sleep", "docs__whoami",
    ]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_tiers_decide_who_is_offered_a_server(mcp_http: McpTestServer, alice: Any, bob: Any) -> None:
    # given: a PRO-only server; alice is PRO, bob is FREE
    mcp_server_create(name="docs", url=mcp_http.url, bearer_token=TOKEN, allowed_tiers=["PRO"])
    account_tier_set(user=alice, tier="PRO", reason="test", check_drift=False)
    # when / then
    assert len(_offered_names(alice)) == 10
    assert _offered_names(bob) == []


@pytest.mark.django_db(transaction=True)
def test_a_server_with_unreadable_credentials_is_left_out(mcp_http: McpTestServer, alice: Any) -> None:
    # given: credentials written under another SECRET_KEY
    server = mcp_server_create(name="docs", url=mcp_http.url, bearer_token=TOKEN)
    McpServer.objects.filter(pk=server.pk).update(secret_encrypted="gAAAAABnot-a-valid-token")
    # when / then
    assert _offered_names(alice) == []


@pytest.mark.django_db(transaction=True)
def test_a_server_that_exits_right_after_starting_is_restarted_with_back_off(settings: Any) -> None:
    # given: a stdio server that exits right after listing its tools, every time
    settings.COPILOT_MCP_RECONNECT_MAX_S = 30.0
    server = mcp_server_create(name="crashy", transport="stdio", command=[*stdio_command(), "--exit-after-list"])
    starts: list[float] = []

    async def scenario() -> None:
        pool = turn_pool()
        original = pool.tools_listed
        third_start = asyncio.Event()

        async def count(config: Any, tools: Any) -> None:
            starts.append(time.monotonic())
            if len(starts) == 3:
                third_start.set()
            await original(config, tools)

        pool.tools_listed = count
        await mcp_connections_warm()
        # when: it has crashed a few times
        try:
            await asyncio.wait_for(third_start.wait(), 30)
        finally:
            await pool.close()

    asyncio.run(scenario())
    started = starts
    # then: the restarts are spaced by the growing back-off (1 s, then 2 s), not a tight loop
    assert len(started) == 3
    gaps = [b - a for a, b in zip(started, started[1:], strict=False)]
    assert gaps[0] >= 1.0
    assert gaps[1] >= 2.0
    assert McpServer.objects.get(pk=server.pk).last_reachable is True
