"""An MCP tool's image reaches the model as an image part of its tool result where the provider
takes one (Anthropic), and only as a description elsewhere (the OpenAI-compatible route)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from chat.mcp.services import mcp_server_create
from chat.mcp.tools import turn_pool
from chat.models import ChatSession
from copilot_site.testing.llm_script import FakeLLMServer
from copilot_site.testing.mcp_server import PNG_1X1_BASE64, McpTestServer
from tests.chat.conftest import fake
from tests.chat.engine.helpers import run
from tests.chat.mcp.conftest import TOKEN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("title_task_delay")]

DESCRIBED = '{"content": [{"type": "image", "media_type": "image/png", "size_bytes": 70}]}'
IMAGE_CALL = {"rounds": [{"tool_calls": [{"name": "docs__image", "id": "c1", "arguments": {}}]}, {"text": "A dot."}]}


@pytest.fixture
def session(alice: Any) -> ChatSession:
    return ChatSession.objects.create(user=alice)


@pytest_asyncio.fixture
async def pool_closed() -> AsyncIterator[None]:
    yield
    await turn_pool().close()  # this test's loop's MCP connections


@pytest.mark.asyncio
async def test_anthropic_gets_the_image_as_an_image_block(
    llm: FakeLLMServer, session: ChatSession, settings: Any, mcp_http: McpTestServer, pool_closed: None
) -> None:
    # given
    settings.COPILOT_LLM_PROVIDER = "anthropic"
    await _server(mcp_http)
    # when
    events = await run(session, "draw " + fake(IMAGE_CALL))
    # then
    assert "".join(e.to_wire().get("delta", "") for e in events if e.type == "text-delta") == "A dot."
    second = llm.requests[-1]["body"]
    assert second["messages"][-1]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "c1",
            "content": [
                {"type": "text", "text": DESCRIBED},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1_BASE64}},
            ],
        }
    ]


@pytest.mark.asyncio
async def test_openai_compatible_route_gets_the_description_only(
    llm: FakeLLMServer, session: ChatSession, mcp_http: McpTestServer, pool_closed: None
) -> None:
    # given
    await _server(mcp_http)
    # when
    await run(session, "draw " + fake(IMAGE_CALL))
    # then
    second = llm.requests[-1]["body"]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": DESCRIBED}


async def _server(mcp_http: McpTestServer) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(mcp_server_create)(name="docs", url=mcp_http.url, bearer_token=TOKEN)
